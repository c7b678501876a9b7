"""Showing a run as it happens: a live view on a TTY, one plain line per event otherwise.

Part of the CLI layer: the engine only emits events; this turns them into text.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from outloop_cli.engine.events import Event
from outloop_cli.safe_text import for_terminal, one_line
from outloop_cli.timefmt import format_seconds

if TYPE_CHECKING:
    from rich.table import Table


class PlainProgress:
    """One line per event, for logs and CI: greppable, no escape codes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        # runs of `--jobs N` report from their own threads; keep lines whole
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if event.kind == "phase":
            return
        with self._lock:
            self._print(event)

    def _print(self, event: Event) -> None:
        prefix = f"[{event.loop} {event.run_id}]"
        where = (
            "baseline"
            if event.iteration == 0
            else f"iteration {event.iteration}/{event.max_iterations}"
        )
        if event.kind in ("run_started", "run_stopped"):
            where = event.kind.replace("_", " ")
        line = for_terminal(f"{prefix} {where}: {event.message}")
        print(line, file=self.stream, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass
class _LoopState:
    """One run's row in the live table, updated from its events."""

    loop: str
    run_id: str
    iteration: int = 0
    max_iterations: int = 0
    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    last_goal: str = "—"
    done: str | None = None
    finished: float | None = None


class LiveProgress:
    """A rich live table: loop, iteration n/max, phase, elapsed, last goal result."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stderr)
        self.states: dict[str, _LoopState] = {}
        self._lock = threading.Lock()
        self.live = Live(
            console=self.console, refresh_per_second=4, get_renderable=self._render, transient=False
        )

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._update(event)

    def _update(self, event: Event) -> None:
        state = self.states.get(event.run_id)
        if state is None:
            state = _LoopState(event.loop, event.run_id)
            self.states[event.run_id] = state
        state.iteration = event.iteration
        state.max_iterations = event.max_iterations
        if event.phase:
            state.phase = {
                "agent": "agent working",
                "goal": "checking goal",
                "commit": "committing",
                "waiting_approval": "waiting for approval",
            }.get(event.phase, event.phase)
        if event.goal is not None:
            state.last_goal = ("✅ " if event.goal.met else "❌ ") + event.goal.summary
        if event.kind == "run_stopped":
            state.done = event.message
            state.phase = "done"
            state.finished = time.monotonic()
        if event.kind in (
            "note",
            "run_stopped",
            "agent_exited",
            "committed",
            "approval_requested",
            "approval_granted",
            "approval_denied",
            "approval_timed_out",
        ):
            from rich.markup import escape

            self.console.print(
                f"[dim]{escape(one_line(event.loop))}[/dim] {escape(for_terminal(event.message))}",
                highlight=False,
            )

    def _render(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=True, header_style="bold")
        for column in ("loop", "run", "iteration", "phase", "elapsed", "last goal"):
            table.add_column(column)
        with self._lock:
            states = list(self.states.values())
        for state in states:
            iteration = (
                "baseline" if state.iteration == 0 else f"{state.iteration}/{state.max_iterations}"
            )
            # rich keeps ESC in plain strings: every cell is cleaned, and passed as
            # Text so that a `[` in a goal summary is not taken for markup
            cells = (
                state.loop,
                state.run_id,
                iteration,
                state.done or state.phase,
                format_seconds((state.finished or time.monotonic()) - state.started),
                state.last_goal,
            )
            table.add_row(*(Text(one_line(cell)) for cell in cells))
        return table


def make_progress(stream: IO[str] | None = None) -> PlainProgress | LiveProgress:
    target = stream or sys.stderr
    if target.isatty():
        return LiveProgress(target)
    return PlainProgress(target)
