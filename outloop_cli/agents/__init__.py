"""Agent backends: how to run each coding agent for one turn and read its report."""

from outloop_cli.agents.base import AgentBackend, TurnContext, make_agent

__all__ = ["AgentBackend", "TurnContext", "make_agent"]
