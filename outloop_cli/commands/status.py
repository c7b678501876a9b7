"""``outloop status``: every run of this repository (``--all``: of the machine), one summary each.

A run's state comes from its record, corrected by liveness: a record that
says ``running`` while no process holds its lock is a crashed run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from outloop_cli.errors import OutloopError
from outloop_cli.git.repo import discover
from outloop_cli.store.listing_cache import ListingCache, file_key
from outloop_cli.store.runs import RunPaths, RunStore

if TYPE_CHECKING:
    from outloop_cli.store.records import GoalResult, RunRecord

# The records, their reading and the lock probe are imported where a record is read:
# a listing whose runs all come from its cache (store/listing_cache.py) reads none.

# what `status` calls a run: the record's state, with `stopped` split out of `finished`
RUNNING = "running"
WAITING_APPROVAL = "waiting_approval"
FINISHED = "finished"
STOPPED = "stopped"
CRASHED = "crashed"
UNREADABLE = "unreadable"
# in the run index, but its repository or run directory was deleted
GONE = "gone"


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
    from outloop_cli.store.locks import effective_state
    from outloop_cli.store.records import RunState, StopReason

    state = effective_state(record, paths)
    if state is RunState.RUNNING:
        return RUNNING
    if state is RunState.WAITING_APPROVAL:
        return WAITING_APPROVAL
    if state is RunState.CRASHED:
        return CRASHED
    # a human halted it (`outloop stop`, Ctrl-C): not done, and `outloop resume` picks it up
    if record.stop_reason in (StopReason.STOPPED, StopReason.INTERRUPTED):
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
    age = _age(record.started_at, now)
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


def list_runs(
    cwd: Path, *, loop: str | None = None, now: datetime | None = None
) -> list[RunSummary]:
    """This repository's runs, oldest first; a finished run comes from the listing cache."""
    store = RunStore(discover(cwd).common_dir)
    cache = ListingCache.load(store.root, _cache_version())
    now = now or datetime.now(timezone.utc)
    listed = store.run_json_stats()
    summaries: list[RunSummary] = []
    for run_id, stat in listed:
        summary = _summary_of(cache, store, run_id, stat, now)
        if loop is not None and summary.state != UNREADABLE and summary.loop != loop:
            continue
        summaries.append(summary)
    cache.keep_only({run_id for run_id, _ in listed})
    cache.save()
    return summaries


def _summary_of(
    cache: ListingCache,
    store: RunStore,
    run_id: str,
    stat: os.stat_result | None,
    now: datetime,
    *,
    loop_if_unreadable: str = "?",
) -> RunSummary:
    """The run's summary: kept for this very version of run.json (``stat``), or read anew."""
    kept = cache.get(run_id, file_key(stat)) if stat is not None else None
    if kept is not None:
        summary = _summary_from_cache(run_id, kept)
        if summary is not None:
            return replace(summary, age=_age(summary.started_at, now))
        cache.forget(run_id)
    return _read_summary(cache, store, run_id, now, loop_if_unreadable=loop_if_unreadable)


def _read_summary(
    cache: ListingCache,
    store: RunStore,
    run_id: str,
    now: datetime,
    *,
    loop_if_unreadable: str,
) -> RunSummary:
    """The summary from run.json itself, kept in ``cache`` when the record is finished."""
    from outloop_cli.store.run_listing import listing_of

    read_at_ns = time.time_ns()
    try:
        data, stat = store.read_with_stat(run_id)
        listing = listing_of(store, run_id, data)
    except OutloopError as exc:
        cache.forget(run_id)
        return _unreadable(run_id, exc.message, loop=loop_if_unreadable)
    summary = summarize(listing.record, store.paths(run_id), now=now, cost_usd=listing.cost_usd)
    kept = _summary_to_cache(summary)
    # a record of odd types (a hand-edited one) would be refused when read back: not kept
    if (
        not listing.record.state.live
        and summary.state in _CACHED_STATES
        and _summary_from_cache(run_id, kept) is not None
    ):
        cache.put(run_id, file_key(stat), kept, read_at_ns=read_at_ns)
    else:
        cache.forget(run_id)
    return summary


# Bump when what a finished run's summary holds or how it is worked out changes
# (summarize, display_state, failing_count, store/run_listing.py): a cache written by
# other code is then not believed. tests/cli/test_status_cache.py pins that code.
SUMMARY_FORMAT = 1
# what a run's record alone decides: a live record's state is its lock's, at each listing
_CACHED_STATES = (FINISHED, STOPPED)
# the age is the time since the start, so it is worked out at each listing
_NOT_CACHED = frozenset({"age"})
# every field a cached summary holds, with the JSON types it may have
_CACHED_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "loop": (str,),
    "state": (str,),
    "iteration": (int,),
    "max_iterations": (int, type(None)),
    "phase": (str, type(None)),
    "stop_reason": (str, type(None)),
    "stop_detail": (str, type(None)),
    "goal": (str, type(None)),
    "failing": (int, type(None)),
    "goal_summary": (str, type(None)),
    "cost_usd": (int, float, type(None)),
    "started_at": (str,),
    "duration": (int, float, type(None)),
    "branch": (str,),
    "worktree": (str,),
    "pid": (int, type(None)),
    "host": (str, type(None)),
    # only a run waiting for an approval has one, and such a run is never cached
    "approval": (type(None),),
}


def _cache_version() -> str:
    from outloop_cli import __version__

    return f"{__version__}+summary.{SUMMARY_FORMAT}"


def _summary_to_cache(summary: RunSummary) -> dict[str, Any]:
    return {name: value for name, value in summary.as_json().items() if name not in _NOT_CACHED}


def _summary_from_cache(run_id: str, kept: Any) -> RunSummary | None:
    """The summary a cache entry holds, or None when it is not one this version wrote."""
    if not isinstance(kept, dict) or set(kept) != set(_CACHED_TYPES):
        return None
    for name, types in _CACHED_TYPES.items():
        value = kept[name]
        # bool is an int to isinstance, and never a value of these fields
        if isinstance(value, bool) or not isinstance(value, types):
            return None
        # json reads NaN and Infinity, which no record holds
        if isinstance(value, float) and not math.isfinite(value):
            return None
    if kept["run_id"] != run_id or kept["state"] not in _CACHED_STATES:
        return None
    return RunSummary(**kept, age=None)


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
    # one listing cache per repository; not pruned here, as the index may not list every run
    caches: dict[Path, ListingCache] = {}
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
            age = _age(entry.started_at, now)
            rows.append(MachineRun(repo, entry.workspace, replace(summary, age=age)))
            continue
        store = entry.store
        cache = caches.get(store.root)
        if cache is None:
            cache = caches[store.root] = ListingCache.load(store.root, _cache_version())
        try:
            stat: os.stat_result | None = entry.paths.run_json.stat()
        except OSError:
            stat = None
        summary = _summary_of(cache, store, entry.run_id, stat, now, loop_if_unreadable=entry.loop)
        rows.append(MachineRun(repo, entry.workspace, summary))
    for cache in caches.values():
        cache.save()
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


def _age(started_at: str, now: datetime) -> float | None:
    """Seconds from ``started_at`` to ``now``; None when the start is not a time."""
    started = _parse(started_at)
    return (now - started).total_seconds() if started else None


def _parse(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
