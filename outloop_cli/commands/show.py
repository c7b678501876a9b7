"""``outloop show RUN``: one run in full: its facts, then one row per iteration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outloop_cli.commands.run_ref import open_run
from outloop_cli.commands.status import RunSummary, failing_count, summarize
from outloop_cli.store.records import IterationRecord, RunRecord
from outloop_cli.store.runs import RunPaths


@dataclass(frozen=True)
class IterationRow:
    """One iteration as a row of ``outloop show``: its commit, agent, goal, time and cost."""

    n: int
    commit: str | None
    changed_files: int
    agent_exit: int | None
    agent_error: str | None
    agent_duration: float | None
    # "pass" | "fail" | None (not evaluated: baseline-only or stopped first)
    goal: str | None
    failing: int | None
    duration: float
    cost_usd: float | None
    # the iteration a running run is in the middle of
    in_progress: bool = False

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunDetails:
    """What ``outloop show RUN`` prints: the run's summary, its record, a row per iteration."""

    summary: RunSummary
    record: RunRecord
    paths: RunPaths
    iterations: list[IterationRow]
    worktree_exists: bool

    def as_json(self) -> dict[str, Any]:
        data = self.record.to_dict()
        # the record says what it last wrote; these say what is true now
        data["state"] = self.summary.state
        data["recorded_state"] = self.record.state.value
        data["worktree_exists"] = self.worktree_exists
        data["rows"] = [row.as_json() for row in self.iterations]
        data["files"] = {
            "run_dir": str(self.paths.root),
            "run_json": str(self.paths.run_json),
            "audit": str(self.paths.audit),
            "junit": str(self.paths.junit),
            "summary": str(self.paths.summary),
            "logs": str(self.paths.logs),
        }
        return data


def show_run(cwd: Path, run_ref: str) -> RunDetails:
    run = open_run(cwd, run_ref)
    paths = run.paths
    record = run.store.load(run.run_id)
    summary = summarize(record, paths)
    running = summary.state in ("running", "waiting_approval")
    rows = [
        _row(it, in_progress=running and it is record.iterations[-1]) for it in record.iterations
    ]
    return RunDetails(summary, record, paths, rows, Path(record.worktree).is_dir())


def _row(it: IterationRecord, *, in_progress: bool) -> IterationRow:
    agent = it.agent
    goal = it.goal
    return IterationRow(
        n=it.n,
        commit=it.commit,
        changed_files=len(it.changed_files),
        agent_exit=agent.exit_code if agent else None,
        agent_error=agent.error if agent else None,
        agent_duration=agent.duration if agent else None,
        goal=None if goal is None else ("pass" if goal.met else "fail"),
        failing=failing_count(goal) if goal is not None else None,
        duration=it.duration,
        cost_usd=agent.cost_usd if agent else None,
        in_progress=in_progress and it.finished_at is None,
    )
