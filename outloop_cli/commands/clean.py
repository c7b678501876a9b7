"""``outloop clean``: remove the worktrees of runs that are over; branches always stay.

A run is over when no process holds its lock (finished, stopped or crashed).
Each removal happens while holding that run's lock, so a run cannot be
resumed into a worktree that is being deleted, and a live run is never
touched. A worktree goes with the agent's private git dir when its ``.git``
file names that run's git dir (outloop's own git dir, and with it the run's
commits, stays with the record); worktrees of the older layout go when git
has them registered for this repository. A recorded path that is neither is
left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from outloop_cli.commands.status import RUNNING, display_state
from outloop_cli.credentials.run_key import forget_run_key
from outloop_cli.errors import CouldNotRun, GitError, OutloopError
from outloop_cli.git import rundirs
from outloop_cli.git.repo import Repository, discover
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.git.worktree import Worktree
from outloop_cli.paths import worktrees_root
from outloop_cli.store.locks import run_lock
from outloop_cli.store.run_index import forget_run
from outloop_cli.store.runs import RunStore


@dataclass(frozen=True)
class CleanTarget:
    """A run that is over, and the worktree ``outloop clean`` would remove for it."""

    run_id: str
    state: str
    worktree: Path
    # git has the worktree registered (and it is not the main checkout): the older layout
    registered: bool
    # the run's own git dirs, when the worktree is theirs (the current layout)
    dirs: RunGitDirs | None = None

    @property
    def has_worktree(self) -> bool:
        """Whether there is a worktree of this run to remove."""
        return self.registered or (self.dirs is not None and self.worktree.is_dir())


@dataclass
class CleanPlan:
    """What ``outloop clean`` would do in a repository: the runs to clean, and those it leaves."""

    repo: Repository
    targets: list[CleanTarget] = field(default_factory=list)
    # runs left alone because they are running
    running: list[str] = field(default_factory=list)
    # runs whose record cannot be read, with why: never cleaned blind
    unreadable: dict[str, str] = field(default_factory=dict)


@dataclass
class CleanResult:
    """What ``outloop clean`` did: the worktrees removed, and the runs left alone or failed."""

    removed: list[CleanTarget] = field(default_factory=list)
    # per removed worktree: paths that differed from the branch and went with it
    discarded: dict[str, int] = field(default_factory=dict)
    records_dropped: list[str] = field(default_factory=list)
    # recorded paths that exist but are not worktrees of this repository
    left_alone: list[CleanTarget] = field(default_factory=list)
    # runs that started (or resumed) between planning and cleaning
    became_running: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    # runs whose worktree git could not remove, with git's words
    failed: dict[str, str] = field(default_factory=dict)


def plan_clean(cwd: Path) -> CleanPlan:
    repo = Repository(discover(cwd))
    store = RunStore(repo.info.common_dir)
    registered = _registered_worktrees(repo)
    plan = CleanPlan(repo)
    for run_id in store.run_ids():
        paths = store.paths(run_id)
        try:
            record = store.load(run_id)
        except OutloopError as exc:
            plan.unreadable[run_id] = exc.message
            continue
        state = display_state(record, paths)
        if state == RUNNING:
            plan.running.append(run_id)
            continue
        worktree = Path(record.worktree)
        dirs = RunGitDirs(paths.own_git_dir, paths.agent_git_dir, worktree)
        plan.targets.append(
            CleanTarget(
                run_id,
                state,
                worktree,
                _key(worktree) in registered,
                # a worktree deleted by hand still leaves the agent's git dir to remove
                dirs if rundirs.owns_work_tree(dirs) or _gone_but_ours(dirs) else None,
            )
        )
    return plan


def execute_clean(plan: CleanPlan, *, drop_records: bool) -> CleanResult:
    repo = plan.repo
    store = RunStore(repo.info.common_dir)
    result = CleanResult(running=list(plan.running), unreadable=dict(plan.unreadable))
    for target in plan.targets:
        try:
            with run_lock(store.paths(target.run_id)):
                try:
                    cleaned = _clean_one(repo, target, result)
                except GitError as exc:
                    # keep the record: it is how the user finds the worktree again
                    result.failed[target.run_id] = exc.message
                    continue
                if drop_records and cleaned:
                    store.delete(target.run_id)
                    # the key only ever vouched for those records
                    forget_run_key(target.run_id)
                    # deleted on purpose: not "gone" in `status --all`, just no longer there
                    forget_run(target.run_id, common_dir=repo.info.common_dir)
                    result.records_dropped.append(target.run_id)
        except CouldNotRun:
            # only the lock raises this here: the run started or resumed meanwhile
            result.became_running.append(target.run_id)
    # also forgets worktrees whose directories were deleted by hand
    repo.prune_worktrees()
    # the per-repository folder that held them (wherever XDG_STATE_HOME pointed then)
    for parent in {t.worktree.parent for t in result.removed} | {
        worktrees_root(repo.info.root, repo.info.common_dir)
    }:
        _remove_if_empty(parent)
    return result


def _clean_one(repo: Repository, target: CleanTarget, result: CleanResult) -> bool:
    """Remove the run's worktree; False when something is left that the user should look at."""
    if target.dirs is not None:
        if not target.worktree.exists():
            rundirs.remove_work_tree(target.dirs)
            return True
        try:
            result.discarded[target.run_id] = len(Worktree(target.dirs, "").changes())
        except GitError:
            pass  # a damaged worktree: remove it all the same
        rundirs.remove_work_tree(target.dirs)
        result.removed.append(target)
    elif target.registered:
        # not asked what it holds: that would run git through the worktree's own .git file
        repo.remove_worktree(target.worktree)
        result.removed.append(target)
    elif target.worktree.exists():
        result.left_alone.append(target)
        return False
    return True


def _gone_but_ours(dirs: RunGitDirs) -> bool:
    return not dirs.work_tree.exists() and (dirs.own / "HEAD").is_file()


def _registered_worktrees(repo: Repository) -> set[str]:
    """Every linked worktree git knows for this repository (not the main checkout)."""
    return {_key(p) for p in repo.linked_worktrees()}


def _key(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass
