"""A fresh run: its locks, its scratch branch and worktree, its first record, its broker.

Run in that order so a run that cannot start leaves nothing held: the locks
are released again when any later step fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli import __version__
from outloop_cli.engine.index import register_in_index
from outloop_cli.engine.trigger_checks import with_failed_checks
from outloop_cli.engine.worktree_reuse import WorktreeOrigin, take_over
from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.git import rundirs
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.git.worktree import Worktree
from outloop_cli.paths import worktrees_root
from outloop_cli.store.locks import loop_lock, run_lock
from outloop_cli.store.records import RunRecord, RunState
from outloop_cli.timefmt import now_iso
from outloop_cli.triggers.event import EVENT_FILE, write_event_file

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.engine.guards import Guards
    from outloop_cli.git.repo import Repository


def start_run(ctx: RunContext, guards: Guards) -> RunRecord:
    """Create the run's branch, worktree and record; the run is ``running`` from here on."""
    repo = ctx.plan.repo
    config = ctx.config
    branch = config.branch.replace("{loop}", config.name).replace("{run}", ctx.run_id)
    if repo.branch_exists(branch):
        raise CouldNotRun(
            f"branch {branch} already exists", hint="choose another `branch` template"
        )
    worktree_path = worktrees_root(repo.info.root, repo.info.common_dir) / ctx.run_id
    check_outside(worktree_path, repo)
    with released_on_error(ctx):
        if not ctx.options.parallel:
            ctx.held.enter_context(loop_lock(repo.info.common_dir, config.name, run_id=ctx.run_id))
        ctx.store.create(ctx.run_id)
        ctx.held.enter_context(run_lock(ctx.paths))
        ctx.worktree, origin = reuse_or_create_worktree(ctx, worktree_path, branch)
        guards.capture_git_config()
        ctx.record = _first_record(ctx, branch, worktree_path)
        ctx.record.worktree_origin = origin.record()
        ctx.save()
        register_in_index(ctx)
        write_event_file(ctx.paths.root / EVENT_FILE, ctx.plan.event)
        ctx.audit(
            "run_started",
            loop=config.name,
            branch=branch,
            base=ctx.plan.base_commit,
            worktree=str(worktree_path),
            agent=ctx.plan.agent.label,
            goal=ctx.plan.verifier.label,
        )
        ctx.audit("worktree", **origin.record())
        ctx.audit("triggered", **ctx.plan.event.audit_fields())
        ctx.emit("run_started", 0, f"worktree {worktree_path} on branch {branch}")
        announce_sandbox(ctx)
        start_access(ctx)
        _read_trigger_checks(ctx)
        return ctx.record


def _read_trigger_checks(ctx: RunContext) -> None:
    """A run a failed CI run started learns that run's failed checks before its first turn."""
    event = with_failed_checks(ctx)
    if event is ctx.plan.event:
        return
    ctx.plan = dataclasses.replace(ctx.plan, event=event)
    ctx.record.trigger = event.record()
    write_event_file(ctx.paths.root / EVENT_FILE, event)
    ctx.save()


def run_git_dirs(ctx: RunContext, worktree_path: Path) -> RunGitDirs:
    """The run's git dirs: found from its run directory, never from the work tree."""
    return RunGitDirs(
        own=ctx.paths.own_git_dir, agent=ctx.paths.agent_git_dir, work_tree=worktree_path
    )


def create_worktree(ctx: RunContext, worktree_path: Path, branch: str) -> Worktree:
    """The user's branch at the base, the run's own git dirs, the work tree checked out."""
    return reuse_or_create_worktree(ctx, worktree_path, branch, reuse=False)[0]


def reuse_or_create_worktree(
    ctx: RunContext, worktree_path: Path, branch: str, *, reuse: bool = True
) -> tuple[Worktree, WorktreeOrigin]:
    """The user's branch at the base, the run's own git dirs, and the work tree: a finished
    run's moved to the base when one is safe to take (``engine/worktree_reuse.py``), else
    checked out afresh."""
    repo = ctx.plan.repo
    dirs = run_git_dirs(ctx, worktree_path)
    base = ctx.plan.base_commit
    repo.create_branch(branch, base)
    rundirs.prepare(
        dirs,
        user_objects=repo.info.common_dir / "objects",
        branch=branch,
        base=base,
        identity=agent_git_identity(ctx),
        remotes=repo.remotes(),
    )
    origin = take_over(ctx, dirs, base) if reuse else WorktreeOrigin()
    if origin.reused_from is None:
        rundirs.check_out(dirs, branch, base)
    else:
        rundirs.sync_agent(dirs, branch, base)
    return Worktree(dirs, branch), origin


def agent_git_identity(ctx: RunContext) -> tuple[str, str]:
    """Who the agent's own ``git commit`` says it is: the agent, as on outloop's commits."""
    from outloop_cli.engine.commit import agent_identity

    who = agent_identity(ctx.plan.agent.label)
    return who.name, who.email


def _first_record(ctx: RunContext, branch: str, worktree_path: Path) -> RunRecord:
    plan = ctx.plan
    limits = ctx.config.limits
    return RunRecord(
        run_id=ctx.run_id,
        loop=ctx.config.name,
        state=RunState.RUNNING,
        started_at=now_iso(),
        branch=branch,
        base_commit=plan.base_commit,
        worktree=str(worktree_path),
        repo_root=str(plan.repo.info.root),
        config_path=ctx.config.path,
        agent_label=plan.agent.label,
        goal_label=plan.verifier.label,
        description=ctx.config.description,
        limits={
            "max_iterations": plan.max_iterations,
            "max_time": limits.max_time,
            "max_cost_usd": limits.max_cost_usd,
            "max_tokens": limits.max_tokens,
            "stall": limits.stall,
            "max_agent_errors": limits.max_agent_errors,
        },
        pid=os.getpid(),
        host=socket.gethostname(),
        outloop_version=__version__,
        sandbox=plan.sandbox.record(),
        trigger=plan.event.record(),
    )


def announce_sandbox(ctx: RunContext) -> None:
    """The sandbox the run got, in the audit log; a run without one when asked says so loudly."""
    choice = ctx.plan.sandbox
    ctx.audit("sandbox", **choice.record())
    if choice.warning:
        ctx.note(0, "warning: " + choice.warning)


def start_access(ctx: RunContext) -> None:
    """Audit what the policy decided, then start the broker (revoked when the run ends)."""
    access = ctx.plan.access
    for decision in access.decisions:
        ctx.audit(decision.event, **decision.audit_fields())
    for note in access.notes:
        ctx.note(ctx.current_n(), note)
    access.start(ctx.run_id, ctx.audit_fields)
    ctx.held.callback(access.close)
    ctx.masker = access.masker()
    for note in ctx.plan.egress.notes:
        ctx.note(ctx.current_n(), note)
    ctx.egress.start(ctx.plan.egress, ctx.audit)
    ctx.held.callback(ctx.egress.close)


@contextlib.contextmanager
def released_on_error(ctx: RunContext) -> Iterator[None]:
    """Give the locks (and the broker) back when a run fails before its loop starts."""
    try:
        yield
    except BaseException:
        ctx.release()
        raise


def check_outside(worktree_path: Path, repo: Repository) -> None:
    """The run's worktree must not lie inside the repository or its git directory."""
    resolved = worktree_path.resolve()
    for inside in (repo.info.root.resolve(), repo.info.common_dir.resolve()):
        if resolved == inside or inside in resolved.parents:
            raise UsageError(
                f"the worktree location {worktree_path} is inside {inside}",
                hint="set XDG_STATE_HOME to a directory outside the repository",
            )
