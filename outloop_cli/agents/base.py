"""The contract between the engine and an agent backend, and what every backend shares.

Backends (:mod:`~outloop_cli.agents.headless` and the presets built on it,
:mod:`~outloop_cli.agents.command`) import this module; which preset name builds
which backend is :mod:`outloop_cli.agents.registry`'s business, never theirs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from outloop_cli.config.model import AgentConfig, CredentialConfig
from outloop_cli.errors import UsageError
from outloop_cli.process.spawn import ProcessResult
from outloop_cli.store.records import AgentResult


@dataclass(frozen=True)
class TurnContext:
    """What a backend is told about one agent turn: the run, iteration, worktree and prompt."""

    loop: str
    run_id: str
    iteration: int
    workdir: Path
    # prompt plus outloop's feedback, also written to prompt_file
    prompt_text: str
    prompt_file: Path
    # a private scratch directory for this agent's own state (config, logs)
    state_dir: Path
    # outloop's sandbox contains the turn: a tool's own sandbox inside it is redundant,
    # and one built on user namespaces cannot nest there (they are disabled inside)
    contained: bool = False
    # the event that started the run, as JSON (triggers/event.py); `{event_file}` in argv
    event_file: Path | None = None


@dataclass(frozen=True)
class Invocation:
    """How a backend wants one turn started: argv, extra environment and stdin."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None


class AgentBackend(Protocol):
    @property
    def label(self) -> str:
        """Who made the commit, e.g. ``claude`` (author becomes ``claude via outloop``)."""
        ...

    @property
    def executable(self) -> str:
        """The program that must exist on PATH before a run can start."""
        ...

    def invocation(self, ctx: TurnContext) -> Invocation: ...

    def interpret(self, result: ProcessResult, ctx: TurnContext) -> AgentResult:
        """Turn the finished process into a record: exit, usage, cost, error kind."""
        ...


class BackendClass(Protocol):
    """What the registry builds an agent from: a class, called with the loop's ``agent:``."""

    def __call__(self, config: AgentConfig) -> AgentBackend: ...

    def default_credentials(self) -> tuple[CredentialConfig, ...]:
        """The provider's credential a loop with this preset gets unless it names its own."""
        ...


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")


def expand(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders; ``{{``/``}}`` are literal braces (validated at load)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in values:
            raise UsageError(f"unknown placeholder {token} in agent command")
        return values[name]

    return _PLACEHOLDER.sub(replace, template)


def placeholder_values(ctx: TurnContext) -> dict[str, str]:
    return {
        "prompt": ctx.prompt_text,
        "prompt_file": str(ctx.prompt_file),
        "workdir": str(ctx.workdir),
        "iteration": str(ctx.iteration),
        "loop": ctx.loop,
        "run": ctx.run_id,
        "event_file": str(ctx.event_file) if ctx.event_file is not None else "",
    }


def base_result(result: ProcessResult, log: str) -> AgentResult:
    """The facts every backend shares; presets add usage and refine ``error``."""
    if result.timed_out:
        error: str | None = "timeout"
    elif result.idle_timed_out:
        error = "idle"
    elif result.cancelled:
        error = "cancelled"
    elif result.exit_code != 0:
        error = "crash" if (result.exit_code or 0) < 0 else "exit"
    else:
        error = None
    return AgentResult(
        exit_code=result.exit_code,
        duration=result.duration,
        timed_out=result.timed_out,
        idle_timed_out=result.idle_timed_out,
        cancelled=result.cancelled,
        output_bytes=result.output_bytes,
        error=error,
        log=log,
    )
