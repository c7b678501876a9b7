"""``outloop status``: every run of this repository (``--all``: of the machine), one summary each.

A run's state comes from its record, corrected by liveness: a record that
says ``running`` while no process holds its lock is a crashed run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import EllipsisType
from typing import Any

from outloop_cli.errors import OutloopError
from outloop_cli.git.repo import discover
from outloop_cli.store.locks import effective_state
from outloop_cli.store.records import GoalResult, RunRecord, RunState, StopReason
from outloop_cli.store.run_listing import load_listing
from outloop_cli.store.runs import RunPaths, RunStore

# what `status` calls a run: the record's state, with `stopped` split out of `finished`
RUNNING = "running"
WAITING_APPROVAL = "waiting_approval"
FINISHED = "finished"
STOPPED = "stopped"
CRASHED = "crashed"
UNREADABLE = "unreadable"
# in the run index, but its repository or run directory was deleted
GONE = "gone"

# a human halted it (`outloop stop`, Ctrl-C): not done, and `outloop resume` picks it up
_HALTED = (StopReason.STOPPED, StopReason.INTERRUPTED)


@dataclass(frozen=True)
class RunSummary:
    """One run as ``outloop status`` shows it: state (corrected by liveness), progress and goal."""

    run_id: str
    loop: str
    state: str
    # the iteration in progress (running) or the last one reached
    iteration: int
    max_iterations: int | None
    # what a running run is doing: baseline, agent, commit, goal, ...
    phase: str | None
    stop_reason: str | None
    stop_detail: str | None
    # "pass" | "fail" | None (not evaluated yet)
    goal: str | None
    failing: int | None
    goal_summary: str | None
    cost_usd: float | None
    started_at: str
    # seconds since the run started, and how long it ran (still running: until now)
    age: float | None
    duration: float | None
    branch: str
    worktree: str
    pid: int | None
    host: str | None
    # waiting_approval: what the run waits for ({id, gate, what, since, timeout_at, ...})
    approval: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def display_state(record: RunRecord, paths: RunPaths) -> str:
    state = effective_state(record, paths)
    if state is RunState.RUNNING:
        return RUNNING
    if state is RunState.WAITING_APPROVAL:
        return WAITING_APPROVAL
    if state is RunState.CRASHED:
        return CRASHED
    if record.stop_reason in _HALTED:
        return STOPPED
    return FINISHED


def summarize(
    record: RunRecord,
    paths: RunPaths,
    *,
    now: datetime | None = None,
    cost_usd: float | EllipsisType | None = ...,
) -> RunSummary:
    """One run's summary; ``cost_usd`` given when ``record`` holds only some iterations."""
    state = display_state(record, paths)
    now = now or datetime.now(timezone.utc)
    started = _parse(record.started_at)
    age = (now - started).total_seconds() if started else None
    duration: float | None = record.duration or None
    live = state in (RUNNING, WAITING_APPROVAL)
    if state == RUNNING:
        # `duration` is active time (a resumed run's pauses do not count) as of the last
        # save; the step in progress has been running since then
        duration = record.duration + _seconds_since_saved(paths, now)
    reached = max((it.n for it in record.iterations), default=0)
    iteration = max(reached, record.current_iteration) if live else reached
    goal = record.last_goal
    max_iterations = record.limits.get("max_iterations")
    return RunSummary(
        run_id=record.run_id,
        loop=record.loop,
        state=state,
        iteration=iteration,
        max_iterations=max_iterations if isinstance(max_iterations, int) else None,
        # where a running run is, or where a crashed one died
        phase=record.phase if live or state == CRASHED else None,
        stop_reason=record.stop_reason.value if record.stop_reason else None,
        stop_detail=record.stop_detail,
        goal=None if goal is None else ("pass" if goal.met else "fail"),
        failing=failing_count(goal) if goal is not None else None,
        goal_summary=goal.summary if goal is not None else None,
        cost_usd=record.cost_usd if isinstance(cost_usd, EllipsisType) else cost_usd,
        started_at=record.started_at,
        age=age,
        duration=duration,
        branch=record.branch,
        worktree=record.worktree,
        pid=record.pid,
        host=record.host,
        approval=record.approval if state == WAITING_APPROVAL else None,
    )


def _seconds_since_saved(paths: RunPaths, now: datetime) -> float:
    try:
        saved = paths.run_json.stat().st_mtime
    except OSError:
        return 0.0
    return max(0.0, now.timestamp() - saved)


def failing_count(goal: GoalResult) -> int | None:
    """How many checks fail, when the goal reports tests; None when it only has an exit code."""
    if goal.met:
        return 0
    if goal.tests is not None:
        return int(goal.tests.failing)
    return len(goal.failing) if goal.failing else None


def list_runs(cwd: Path, *, loop: str | None = None) -> list[RunSummary]:
    store = RunStore(discover(cwd).common_dir)
    summaries: list[RunSummary] = []
    for run_id in store.run_ids():
        paths = store.paths(run_id)
        try:
            listing = load_listing(store, run_id)
        except OutloopError as exc:
            summaries.append(_unreadable(run_id, exc.message))
            continue
        if loop is not None and listing.record.loop != loop:
            continue
        summaries.append(summarize(listing.record, paths, cost_usd=listing.cost_usd))
    return summaries


@dataclass(frozen=True)
class MachineRun:
    """One run of ``status --all``: where it lives, and its summary."""

    repo: str
    workspace: str | None
    summary: RunSummary

    def as_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "workspace": self.workspace, **self.summary.as_json()}


def list_all_runs(*, loop: str | None = None) -> list[MachineRun]:
    """Every run in the machine-wide index, oldest first; never raises for a damaged one."""
    from outloop_cli.store.run_index import list_index

    now = datetime.now(timezone.utc)
    rows: list[MachineRun] = []
    for entry in list_index():
        if loop is not None and entry.loop != loop:
            continue
        repo = str(entry.repo_root) if entry.readable else "?"
        if entry.problem is not None:
            rows.append(MachineRun(repo, None, _unreadable(entry.run_id, entry.problem)))
            continue
        gone = entry.gone_reason()
        if gone is not None:
            summary = _unreadable(
                entry.run_id, gone, state=GONE, loop=entry.loop, started_at=entry.started_at
            )
            started = _parse(entry.started_at)
            age = (now - started).total_seconds() if started else None
            rows.append(MachineRun(repo, entry.workspace, replace(summary, age=age)))
            continue
        try:
            listing = load_listing(entry.store, entry.run_id)
        except OutloopError as exc:
            summary = _unreadable(entry.run_id, exc.message, loop=entry.loop)
            rows.append(MachineRun(repo, entry.workspace, summary))
            continue
        summary = summarize(listing.record, entry.paths, now=now, cost_usd=listing.cost_usd)
        rows.append(MachineRun(repo, entry.workspace, summary))
    return rows


def _unreadable(
    run_id: str, why: str, *, state: str = UNREADABLE, loop: str = "?", started_at: str = ""
) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        loop=loop,
        state=state,
        iteration=0,
        max_iterations=None,
        phase=None,
        stop_reason=None,
        stop_detail=why,
        goal=None,
        failing=None,
        goal_summary=None,
        cost_usd=None,
        started_at=started_at,
        age=None,
        duration=None,
        branch="",
        worktree="",
        pid=None,
        host=None,
    )


def _parse(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
