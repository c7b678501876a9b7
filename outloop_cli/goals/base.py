"""What every goal verifier offers the engine: the context it is given, and the contract.

Verifiers (:mod:`~outloop_cli.goals.command`, :mod:`~outloop_cli.goals.ci.verifier`)
import this module; which goal key builds which verifier is
:mod:`outloop_cli.goals.registry`'s business, never theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from outloop_cli.store.records import GoalResult

if TYPE_CHECKING:
    from outloop_cli.forges.session import ForgeSession


@dataclass(frozen=True)
class GoalContext:
    """What a verifier is given for one evaluation: where, with what environment, and how long."""

    workdir: Path
    env: Mapping[str, str]
    run_dir: Path
    iteration: int
    cancel: threading.Event | None = None
    # masks secrets in output before it is logged or kept
    transform: Callable[[bytes], bytes] | None = None
    # seconds left in the run's time budget, if it has one
    time_left: float | None = None
    # CI goals: the commit outloop pushed for this evaluation, and the run's
    # authenticated access to the forge (see outloop_cli.forges.session)
    head_sha: str | None = None
    forge: ForgeSession | None = None
    # wraps a command (argv, and the script when it is ``sh -c SCRIPT``) in the run's
    # sandbox: the goal runs code the agent wrote, so it is contained like the agent
    contain: Callable[[Sequence[str], str | None], list[str]] | None = None
    # the goal runs in the run's sandbox: a session keyring of its own
    # (process/session_keyring.py) and a PID namespace that ends with it
    sandboxed: bool = False


class Verifier(Protocol):
    """Decides, from outside the agent, whether the goal holds for the worktree."""

    @property
    def label(self) -> str:
        """Short description for commits and reports, e.g. ``pytest -q``."""
        ...

    @property
    def produced_paths(self) -> tuple[str, ...]:
        """Repo-relative files the verifier itself writes (never blamed on the agent)."""
        ...

    def evaluate(self, ctx: GoalContext) -> GoalResult: ...
