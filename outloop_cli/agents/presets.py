"""Presets for the named coding-agent CLIs."""

from __future__ import annotations

from outloop_cli.agents.base import AgentBackend
from outloop_cli.config.model import AgentConfig
from outloop_cli.errors import CouldNotRun


def preset_agent(config: AgentConfig) -> AgentBackend:
    raise CouldNotRun(
        f"preset `{config.preset}` needs the agent presets, which this build does not include yet",
        hint=f'use `preset: command` with `command: ["{config.preset}", ...]` meanwhile',
    )
