"""What a run tells its observer: the events the progress view renders.

Kept apart from the run's state so the CLI's progress view imports this
module alone, without the store, git or the agents behind a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from outloop_cli.store.records import GoalResult


@dataclass(frozen=True)
class Event:
    """Something the user may want to see; also what the progress view renders."""

    kind: str
    run_id: str
    loop: str
    iteration: int
    max_iterations: int
    message: str = ""
    phase: str | None = None
    elapsed: float = 0.0
    goal: GoalResult | None = None


Observer = Callable[[Event], None]


def ignore_events(_: Event) -> None:
    return None
