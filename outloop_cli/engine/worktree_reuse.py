"""A new run's worktree: a finished run's, moved to the new base, or a fresh checkout.

Checking out a 100k-file repository writes every file; a finished run of
the same repository left a worktree that differs from the new base in a
few. The newest finished runs are asked, in turn, whether theirs can be
taken over (:mod:`outloop_cli.git.reuse` says what makes that safe); the
first that can is moved, under that run's lock, so neither a resume nor
``outloop clean`` nor another starting run touches it meanwhile. Whatever
happens, the new run starts in a worktree that holds exactly the base's
files, and ``run.json`` (``worktree_origin``) and the audit log say which
way it was made and why each candidate was passed over.

The old run keeps its branch, its git dir (with every commit), its agent's
git dir and its records: ``show`` and ``report`` read those, and ``resume``
checks the branch out into a new worktree at the recorded path.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outloop_cli.errors import CouldNotRun, GitError, OutloopError
from outloop_cli.git import reuse
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.process.proc import processes_in
from outloop_cli.store.locks import run_lock
from outloop_cli.store.records import RunState

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext

# each candidate costs a `git status` of its worktree: the newest few finished runs are
# the likeliest to be close to the new base, and a long list must not slow a start.
# A run whose lock is held (one still running, as with --jobs) costs nothing to pass
# over and is not counted, or runs alongside would use every turn up.
MAX_CANDIDATES = 3
_HELD = "another process holds its lock"


@dataclass
class WorktreeOrigin:
    """How a run's worktree was made, for ``run.json`` and the audit log."""

    reused_from: str | None = None
    # paths the checkout wrote or removed (None: a fresh checkout wrote them all)
    files_checked_out: int | None = None
    # finished runs whose worktrees were looked at and not taken, with why
    skipped: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "reused_from": self.reused_from,
            "files_checked_out": self.files_checked_out,
            "skipped": dict(self.skipped),
        }


def take_over(ctx: RunContext, new: RunGitDirs, base: str) -> WorktreeOrigin:
    """Move a finished run's worktree to ``new.work_tree`` at ``base`` if one is safe to take.

    ``new``'s git dirs exist already (``rundirs.prepare``); when no worktree
    is taken, ``new.work_tree`` does not exist and the caller checks out afresh.
    """
    origin = WorktreeOrigin()
    root = new.work_tree.parent
    looked = 0
    for run_id in _newest_finished_first(ctx, root):
        if looked >= MAX_CANDIDATES:
            break
        old_path = root / run_id
        try:
            reason = _try_one(ctx, run_id, old_path, new, base, origin)
        except GitError as exc:
            # the worktree was moved and then failed its checks: it is gone, start afresh
            origin.skipped[run_id] = "moving it failed: " + exc.message.strip()[:300]
            return origin
        except OSError as exc:
            if new.work_tree.exists():
                raise
            origin.skipped[run_id] = f"moving it failed: {exc.strerror or exc}"
            continue
        if reason is None:
            return origin
        origin.skipped[run_id] = reason
        if reason != _HELD:
            looked += 1
    return origin


def _newest_finished_first(ctx: RunContext, root: Path) -> list[str]:
    """Runs that left a worktree under ``root``, the last to write its record first.

    Run ids sort by the second a run started, and runs that start within one
    second sort by their random suffix; a run's record is written last as it
    ends, so its time says which finished most recently.
    """
    stamped: list[tuple[int, str]] = []
    for run_id in ctx.store.run_ids():
        if run_id == ctx.run_id or not (root / run_id).is_dir():
            continue
        try:
            written = ctx.store.paths(run_id).run_json.stat().st_mtime_ns
        except OSError:
            continue
        stamped.append((written, run_id))
    return [run_id for _written, run_id in sorted(stamped, reverse=True)]


def _try_one(
    ctx: RunContext, run_id: str, old_path: Path, new: RunGitDirs, base: str, origin: WorktreeOrigin
) -> str | None:
    """Take ``run_id``'s worktree over; None when it was taken, else why not."""
    paths = ctx.store.paths(run_id)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(run_lock(paths, grace=0))
        except CouldNotRun:
            return _HELD
        # read under the lock: a resume that ran meanwhile has changed it
        try:
            record = ctx.store.load(run_id)
        except OutloopError:
            return "its record cannot be read"
        if record.state is not RunState.FINISHED:
            return f"it is {record.state.value}, not finished"
        if Path(record.worktree) != old_path:
            return "its record names another worktree"
        users = processes_in(old_path)
        if users is None:
            return "whether a process works in it cannot be told here"
        if users:
            return f"process {users[0]} works in it"
        finished_at = _timestamp(record.finished_at)
        if finished_at is None:
            return "its record has no finish time"
        old = RunGitDirs(paths.own_git_dir, paths.agent_git_dir, old_path)
        user_head = ctx.plan.repo.branch_head(record.branch)
        reason = reuse.unsafe_reason(old, record.branch, user_head, new.own, base, finished_at)
        if reason is not None:
            return reason
        moved = reuse.move_work_tree(old, new, record.branch, base)
        if moved is None:
            return "another process moved it first"
        origin.reused_from = run_id
        origin.files_checked_out = moved.changed
        return None


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
