"""Picking a stopped or crashed run up again, from what its branch says happened.

``run.json`` is written after each step, but a crash can fall between a
commit and the next write. The branch's commits carry trailers
(``Outloop-Iteration``, ``Outloop-Goal``), so the record is brought in line
with the branch rather than the other way round (:func:`reconcile`). Before
that, the crashed run's leftover processes are killed; after it, the work
an interrupted turn left in the worktree is committed (:func:`salvage`), so
nothing is lost and the loop goes on with the next iteration.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.engine.commit import import_into_repository
from outloop_cli.engine.index import register_in_index
from outloop_cli.engine.start import (
    agent_git_identity,
    announce_sandbox,
    check_outside,
    released_on_error,
    run_git_dirs,
    start_access,
)
from outloop_cli.errors import CouldNotRun
from outloop_cli.git import rundirs, trailers
from outloop_cli.git.worktree import Worktree, repair_git_link
from outloop_cli.process.leftovers import kill_leftovers
from outloop_cli.store.audit import cut_torn_audit_tail
from outloop_cli.store.locks import loop_lock, run_lock
from outloop_cli.store.records import GoalResult, IterationRecord, RunRecord, RunState
from outloop_cli.timefmt import now_iso

if TYPE_CHECKING:
    from outloop_cli.engine.commit import Commits
    from outloop_cli.engine.context import RunContext
    from outloop_cli.engine.guards import Guards


def resume_run(ctx: RunContext, guards: Guards, commits: Commits) -> int:
    """Take the run over again; returns the first iteration still to do."""
    with released_on_error(ctx):
        ctx.held.enter_context(run_lock(ctx.paths))
        if not ctx.options.parallel:
            ctx.held.enter_context(
                loop_lock(ctx.plan.repo.info.common_dir, ctx.config.name, run_id=ctx.run_id)
            )
        return _resume_locked(ctx, guards, commits)


def _resume_locked(ctx: RunContext, guards: Guards, commits: Commits) -> int:
    record = ctx.record
    repo = ctx.plan.repo
    if not repo.branch_exists(record.branch):
        raise CouldNotRun(
            f"branch {record.branch} of run {record.run_id} no longer exists",
            hint="a run resumes on its own branch; without it, start a new run",
        )
    path = Path(record.worktree)
    # found from the run's directory, never through the work tree's .git file
    dirs = run_git_dirs(ctx, path)
    if not (dirs.own / "HEAD").is_file():
        raise CouldNotRun(
            f"run {record.run_id} has no git dir of its own ({dirs.own})",
            hint="it was started by an older outloop, or its records were removed; start a new run",
        )
    killed = kill_leftovers(record.run_id)
    if killed:
        ctx.note(
            record.current_iteration,
            f"killed {len(killed)} leftover process(es) of the crashed run",
        )
    if path.is_dir() and not rundirs.owns_work_tree(dirs) and path.name != record.run_id:
        # a record edited to name someone else's directory: never written into
        raise CouldNotRun(
            f"the recorded worktree {path} is not run {record.run_id}'s",
            hint="move that directory away, or start a new run",
        )
    if path.is_dir():
        if not dirs.agent.is_dir():
            rundirs.recreate_agent(dirs, record.branch, agent_git_identity(ctx))
            rundirs.sync_agent(dirs, record.branch, Worktree(dirs, record.branch).head())
        # the agent's git link: outloop's git never follows it, but the agent's does
        elif repair_git_link(dirs):
            shown = [str(path / ".git")]
            ctx.audit(
                "protected_path", iteration=record.current_iteration, paths=shown, kind="git_link"
            )
            ctx.note(
                record.current_iteration,
                "put back the worktree's git link, changed while the run was down: "
                + ", ".join(shown),
            )
    else:
        check_outside(path, repo)
        rundirs.recreate_work_tree(dirs, record.branch, agent_git_identity(ctx))
    ctx.worktree = Worktree(dirs, record.branch)
    guards.capture_git_config()
    on_branch = iteration_commits(ctx.worktree, record.base_commit, record.branch, record.run_id)
    pending_tree = record.pending_tree
    pending_n = record.current_iteration
    outcome = reconcile(record, on_branch)
    record.state = RunState.RUNNING
    # a request the dead runner waited for is gone with it; the gate asks again
    record.approval = None
    record.stop_reason = None
    record.stop_detail = None
    record.exit_code = None
    record.finished_at = None
    record.pending_tree = None
    record.pid = os.getpid()
    record.host = socket.gethostname()
    record.sandbox = ctx.plan.sandbox.record()
    ctx.save()
    register_in_index(ctx)
    torn = cut_torn_audit_tail(ctx.paths.audit)
    if torn is not None:
        ctx.audit("audit_tail_discarded", bytes=torn.length, sha256=torn.sha256)
    # a crash between a commit and its import: the user's branch catches up
    import_into_repository(ctx)
    ctx.audit(
        "run_resumed",
        last_committed=outcome.last_committed,
        dropped=outcome.dropped,
        recovered=outcome.recovered,
    )
    ctx.emit(
        "run_started",
        outcome.last_committed,
        f"resumed on {record.branch} after iteration {outcome.last_committed}",
    )
    announce_sandbox(ctx)
    start_access(ctx)
    last = outcome.last_committed
    salvaged = salvage(ctx, commits, last + 1, pending_tree if pending_n == last + 1 else None)
    return last + (2 if salvaged else 1)


def salvage(ctx: RunContext, commits: Commits, n: int, pending_tree: str | None) -> bool:
    """Commit what an interrupted turn left in the worktree, so it is never lost."""
    worktree = ctx.worktree
    max_file_size = ctx.config.commit.max_file_size
    if pending_tree is not None and worktree.has_tree(pending_tree):
        snapshot = worktree.snapshot_of_tree(pending_tree)
    else:
        changes = worktree.changes()
        if not changes:
            return False
        snapshot = worktree.snapshot(changes, max_file_size=max_file_size)
    if snapshot.empty:
        return False
    if ctx.plan.access.scan(worktree.path, snapshot.changed):
        raise CouldNotRun(
            f"the unfinished work of iteration {n} in {worktree.path} contains a secret",
            hint="look at `git status` there, remove it, then resume again",
        )
    it = IterationRecord(n=n, started_at=now_iso())
    it.changed_files = list(snapshot.changed)
    ctx.record.iterations.append(it)
    commits.commit(it, snapshot, None)
    worktree.restore(keep=worktree.oversized(max_file_size))
    it.finished_at = now_iso()
    ctx.save()
    ctx.note(n, f"kept the unfinished work of iteration {n} as a commit")
    return True


@dataclass(frozen=True)
class IterationCommit:
    """One iteration commit of a run as its trailers tell it."""

    sha: str
    run_id: str
    iteration: int
    goal: str  # pass | fail | pending | none


def iteration_commits(
    worktree: Worktree, base: str, branch: str, run_id: str
) -> list[IterationCommit]:
    """Commits of this run on ``branch`` after ``base`` in outloop's git dir, oldest first."""
    commits = []
    for commit in worktree.trailers(
        [f"{base}..refs/heads/{branch}"],
        [trailers.RUN, trailers.ITERATION, trailers.GOAL],
        reverse=True,
    ):
        run = commit.only(trailers.RUN) or ""
        iteration = commit.only(trailers.ITERATION) or ""
        if run != run_id or not iteration.isdigit():
            continue
        goal = commit.only(trailers.GOAL) or trailers.GOAL_NONE
        commits.append(IterationCommit(commit.sha, run, int(iteration), goal))
    return commits


@dataclass(frozen=True)
class Reconciled:
    """What reconciling a record with its branch changed: the last iteration kept, the ones dropped and recovered."""

    last_committed: int
    dropped: list[int]
    recovered: list[int]


def reconcile(record: RunRecord, commits: list[IterationCommit]) -> Reconciled:
    """Make ``record.iterations`` agree with the branch; returns what changed.

    Iterations the record has but the branch lacks never got their commit
    (the crash came first): they are dropped and will be redone. Commits the
    record lacks (the crash came before run.json was written) are recovered
    from their trailers, with what the trailers can tell.
    """
    by_n = {c.iteration: c for c in commits}
    kept: list[IterationRecord] = []
    dropped: list[int] = []
    for it in record.iterations:
        if it.n == 0:
            kept.append(it)
            continue
        commit = by_n.get(it.n)
        if commit is None:
            dropped.append(it.n)
            continue
        it.commit = commit.sha
        kept.append(it)
    known = {it.n for it in kept}
    recovered: list[int] = []
    for commit in commits:
        if commit.iteration in known:
            continue
        goal = None
        if commit.goal in (trailers.GOAL_PASS, trailers.GOAL_FAIL):
            goal = GoalResult(
                met=commit.goal == trailers.GOAL_PASS,
                exit_code=None,
                duration=0.0,
                summary="recovered from the commit trailer after a crash",
            )
        kept.append(
            IterationRecord(n=commit.iteration, started_at="", commit=commit.sha, goal=goal)
        )
        recovered.append(commit.iteration)
    kept.sort(key=lambda it: it.n)
    record.iterations = kept
    last = max((c.iteration for c in commits), default=0)
    return Reconciled(last, dropped, recovered)
