"""``outloop resume``: plan the continuation of a stopped or crashed run from its last commit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.commands.run_ref import open_run
from outloop_cli.commands.stop import run_is_alive
from outloop_cli.engine.plan import LoopPlan, RunOptions, plan_resume
from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.git.repo import Repository
from outloop_cli.store.records import RunRecord, StopReason
from outloop_cli.store.runs import RunPaths


@dataclass(frozen=True)
class ResumePlan:
    """A stopped or crashed run about to be resumed: the plan that continues it, and its record."""

    plan: LoopPlan
    record: RunRecord
    paths: RunPaths


def plan_resume_run(cwd: Path, run_ref: str, options: RunOptions) -> ResumePlan:
    run = open_run(cwd, run_ref)
    repo = Repository(run.repo)
    run_id, paths = run.run_id, run.paths
    record = run.store.load(run_id)
    if record.state.live and run_is_alive(record, paths):
        raise CouldNotRun(
            f"run {run_id} is still running (pid {record.pid})",
            hint=f"stop it first with `outloop stop {run_id}`",
        )
    if record.stop_reason is StopReason.GOAL_MET:
        raise UsageError(f"run {run_id} already met its goal; there is nothing to resume")
    plan = plan_resume(repo, record, options)
    paths.stop_request.unlink(missing_ok=True)
    return ResumePlan(plan, record, paths)
