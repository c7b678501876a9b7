"""The agent presets by name: the one list of them, and how each is built.

The loop schema's ``agent.preset``, ``outloop init`` and the engine all read this
map, as pre-commit's config schema reads its language registry. Each entry
imports its backend only when it is used, so listing the names (every
``outloop validate``) imports no agent. The dependency runs one way: this
module imports the backends; a backend imports :mod:`outloop_cli.agents.base`,
never this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from outloop_cli.agents import credentials

if TYPE_CHECKING:
    from outloop_cli.agents.base import AgentBackend, BackendClass
    from outloop_cli.config.model import AgentConfig, CredentialConfig

# the preset that runs the loop's own program (`agent.command`) rather than a known CLI
COMMAND = "command"


@dataclass(frozen=True)
class Preset:
    """One ``agent.preset`` name: how to load its backend, and what a loop using it needs."""

    name: str
    # imports the backend's module and returns its class: called on use, never at import
    load: Callable[[], BackendClass]
    # whether a loop must say what to do (`prompt` or `prompt_file`); the `command`
    # preset runs a program that may know its task already
    needs_prompt: bool = True
    # the model-API credential it brings, as data (agents/credentials.py); None: ask the
    # backend's class (a plugin's), which imports it
    credentials: tuple[CredentialConfig, ...] | None = None


def _claude() -> BackendClass:
    from outloop_cli.agents.claude import ClaudeAgent

    return ClaudeAgent


def _codex() -> BackendClass:
    from outloop_cli.agents.codex import CodexAgent

    return CodexAgent


def _aider() -> BackendClass:
    from outloop_cli.agents.aider import AiderAgent

    return AiderAgent


def _gemini() -> BackendClass:
    from outloop_cli.agents.gemini import GeminiAgent

    return GeminiAgent


def _command() -> BackendClass:
    from outloop_cli.agents.command import CommandAgent

    return CommandAgent


# In the order messages and `outloop init --help` list them. A plugin or a test adds
# its backend here; the loop schema accepts it from then on.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("claude", _claude, credentials=(credentials.ANTHROPIC,)),
        Preset("codex", _codex, credentials=(credentials.OPENAI,)),
        Preset("aider", _aider, credentials=(credentials.OPENAI,)),
        Preset("gemini", _gemini, credentials=(credentials.GEMINI,)),
        Preset(COMMAND, _command, needs_prompt=False, credentials=()),
    )
}


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def prompted_presets() -> tuple[str, ...]:
    """The presets a loop must give a prompt (``agent.prompt`` or ``agent.prompt_file``)."""
    return tuple(name for name, preset in PRESETS.items() if preset.needs_prompt)


def backend_class(preset: str) -> BackendClass:
    """The class that runs ``preset``; :class:`UsageError` naming the known presets."""
    try:
        entry = PRESETS[preset]
    except KeyError:
        # `outloop --help` lists the names: the error path's import stays off it
        from outloop_cli.errors import UsageError

        known = ", ".join(PRESETS)
        raise UsageError(f"unknown agent preset `{preset}`", hint=f"one of: {known}") from None
    return entry.load()


def make_agent(config: AgentConfig) -> AgentBackend:
    return backend_class(config.preset)(config)


def default_credentials(preset: str) -> tuple[CredentialConfig, ...]:
    """The model-API credential a preset brings (SPEC §2); empty for ``command``."""
    entry = PRESETS.get(preset)
    if entry is None:
        return ()
    if entry.credentials is not None:
        return entry.credentials
    return entry.load().default_credentials()
