"""The named agent presets: one class per coding-agent CLI, registered here by name."""

from __future__ import annotations

from outloop_cli.agents.aider import AiderAgent
from outloop_cli.agents.claude import ClaudeAgent
from outloop_cli.agents.codex import CodexAgent
from outloop_cli.agents.gemini import GeminiAgent
from outloop_cli.agents.headless import HeadlessAgent
from outloop_cli.config.model import AgentConfig, CredentialConfig
from outloop_cli.errors import UsageError

PRESET_CLASSES: dict[str, type[HeadlessAgent]] = {
    "claude": ClaudeAgent,
    "codex": CodexAgent,
    "aider": AiderAgent,
    "gemini": GeminiAgent,
}


def preset_agent(config: AgentConfig) -> HeadlessAgent:
    try:
        cls = PRESET_CLASSES[config.preset]
    except KeyError:
        known = ", ".join([*PRESET_CLASSES, "command"])
        raise UsageError(
            f"unknown agent preset `{config.preset}`", hint=f"one of: {known}"
        ) from None
    return cls(config)


def default_credentials(preset: str) -> tuple[CredentialConfig, ...]:
    """The model-API credential a preset brings (SPEC §2); empty for ``command``."""
    cls = PRESET_CLASSES.get(preset)
    return (cls.credential,) if cls is not None else ()
