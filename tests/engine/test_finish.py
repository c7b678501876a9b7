"""The end of a run: its exit code (the contract scripts and CI rely on) and its reports."""

from __future__ import annotations

import threading

import pytest

from outloop_cli.engine.context import RunContext
from outloop_cli.engine.events import ignore_events
from outloop_cli.engine.finish import exit_code_for, write_reports
from outloop_cli.engine.plan import RunOptions, plan_loop
from outloop_cli.errors import EXIT_COULD_NOT_RUN, EXIT_GOAL_NOT_MET, EXIT_INTERRUPTED, EXIT_OK
from outloop_cli.git.repo import Repository, discover
from outloop_cli.store.records import RunRecord, RunState, StopReason
from outloop_cli.timefmt import now_iso
from tests.conftest import RepoFactory

LOOP = 'agent:\n  preset: command\n  command: [/bin/true]\ngoal:\n  run: "true"\n'

EXPECTED = {
    StopReason.GOAL_MET: EXIT_OK,
    StopReason.INTERRUPTED: EXIT_INTERRUPTED,
    StopReason.ERROR: EXIT_COULD_NOT_RUN,
}


@pytest.mark.parametrize("reason", list(StopReason), ids=lambda r: r.value)
def test_every_stop_reason_has_its_exit_code(reason: StopReason) -> None:
    # every other way to stop is a goal that was not met
    assert exit_code_for(reason) == EXPECTED.get(reason, EXIT_GOAL_NOT_MET)


def test_the_codes_are_the_documented_ones() -> None:
    assert (EXIT_OK, EXIT_GOAL_NOT_MET, EXIT_COULD_NOT_RUN, EXIT_INTERRUPTED) == (0, 1, 3, 130)


def test_the_reports_are_whole_files_others_may_read(make_repo: RepoFactory) -> None:
    root = make_repo({".outloop/fix.yml": LOOP})
    plan = plan_loop(Repository(discover(root)), "fix", RunOptions())
    ctx = RunContext(
        plan,
        RunOptions(),
        observer=ignore_events,
        cancel=threading.Event(),
        interrupt=threading.Event(),
    )
    ctx.store.create(ctx.run_id)
    ctx.record = RunRecord(
        run_id=ctx.run_id,
        loop="fix",
        state=RunState.FINISHED,
        started_at=now_iso(),
        branch="outloop/fix",
        base_commit=plan.base_commit,
        worktree=str(root),
        repo_root=str(root),
        config_path=".outloop/fix.yml",
        agent_label="command",
        goal_label="true",
        stop_reason=StopReason.GOAL_MET,
        stop_detail="the goal already held before any agent turn",
        exit_code=0,
    )

    write_reports(ctx)

    summary = ctx.paths.summary
    assert "goal_met" in summary.read_text()
    assert summary.stat().st_mode & 0o777 == 0o644
    # written through a temporary file, renamed into place: none is left behind
    assert sorted(p.name for p in ctx.paths.root.iterdir() if p.name.startswith(".")) == []
