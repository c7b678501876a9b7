"""The run's own checkout: what changed, a snapshot as a tree, a commit, a restore."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from outloop_cli.errors import GitError
from outloop_cli.git.cli import Git


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True)
class Change:
    """One path that differs between the worktree and HEAD."""

    path: str
    # porcelain XY, e.g. "??" untracked, " M" modified, " D" deleted
    status: str

    @property
    def deleted(self) -> bool:
        return "D" in self.status


@dataclass(frozen=True)
class Snapshot:
    """What an agent changed, staged as a tree but not yet committed."""

    tree: str
    parent: str
    changed: tuple[str, ...]
    # paths left out because they are larger than allowed, with their size
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changed


class Worktree:
    """The run's own checkout; the only place where outloop writes files."""

    def __init__(self, path: Path, branch: str) -> None:
        self.path = path
        self.branch = branch
        self._git = Git(path)

    def head(self) -> str:
        return self._git.run("rev-parse", "HEAD")

    def is_ancestor(self, commit: str, ref: str) -> bool:
        """Whether ``commit`` is ``ref`` or in its history (False for an unknown commit)."""
        try:
            self._git.run("merge-base", "--is-ancestor", commit, ref)
        except GitError:
            # exit 1 (not an ancestor) and 128 (unknown commit) both mean: not ours
            return False
        return True

    def git_dir(self) -> Path:
        """This worktree's own git directory (``<common dir>/worktrees/<name>``)."""
        return Path(self._git.run("rev-parse", "--absolute-git-dir"))

    def has_tree(self, sha: str) -> bool:
        """Whether ``sha`` names a tree object in the repository."""
        return self._git.run("cat-file", "-t", sha, ok_codes=(0, 1, 128)) == "tree"

    def binary_diff(self, old: str, new: str) -> str:
        """A patch from tree-ish ``old`` to ``new`` that ``git apply`` can replay, binaries too."""
        return self._git.run("diff", "--no-ext-diff", "--binary", old, new, "--", strip=False)

    def speed_up_status(self) -> None:
        """Two full-tree `git status` runs per iteration dominate on big repos: let git cache
        untracked directories, in this worktree's own index only (the user's is untouched)."""
        self._git.run(
            "update-index", "--untracked-cache", "--index-version", "4", ok_codes=(0, 1, 128)
        )

    def changes(self) -> list[Change]:
        """Every path that differs from HEAD, untracked files included, ignored ones not."""
        out = self._git.run(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", strip=False
        )
        changes = []
        for entry in out.split("\0"):
            if len(entry) > 3:
                changes.append(Change(path=entry[3:], status=entry[:2]))
        return changes

    def snapshot(self, changes: Sequence[Change], *, max_file_size: int) -> Snapshot:
        """Stage the given changes (minus oversized files) and write them as a tree."""
        parent = self.head()
        skipped: dict[str, int] = {}
        to_stage: list[str] = []
        for change in changes:
            if not change.deleted:
                try:
                    size = (self.path / change.path).lstat().st_size
                except FileNotFoundError:
                    size = 0
                if size > max_file_size:
                    skipped[change.path] = size
                    continue
            to_stage.append(change.path)
        if to_stage:
            self._git.run(
                "--literal-pathspecs",
                "add",
                "--all",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                stdin="\0".join(to_stage) + "\0",
            )
        tree = self._git.run("write-tree")
        # git may have staged nothing new (e.g. only mode noise); ask it what really changed
        changed = self._git.run(
            "diff", "--cached", "--name-only", "-z", "--no-renames", parent, strip=False
        )
        return Snapshot(
            tree=tree,
            parent=parent,
            changed=tuple(p for p in changed.split("\0") if p),
            skipped=skipped,
        )

    def snapshot_of_tree(self, tree: str) -> Snapshot:
        """A snapshot of a tree written earlier (before a crash), against the current HEAD."""
        parent = self.head()
        changed = self._git.run(
            "diff-tree", "-r", "--name-only", "-z", "--no-renames", parent, tree, strip=False
        )
        return Snapshot(
            tree=tree, parent=parent, changed=tuple(p for p in changed.split("\0") if p)
        )

    def oversized(self, max_file_size: int) -> dict[str, int]:
        """Uncommitted files larger than ``max_file_size``, with their sizes."""
        found: dict[str, int] = {}
        for change in self.changes():
            if change.deleted:
                continue
            try:
                size = (self.path / change.path).lstat().st_size
            except FileNotFoundError:
                continue
            if size > max_file_size:
                found[change.path] = size
        return found

    def commit(
        self, snapshot: Snapshot, message: str, *, author: Identity, committer: Identity
    ) -> str:
        """Commit the snapshot's tree on the run's branch; an unchanged tree makes an empty commit."""
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
        }
        sha = self._git.run(
            "commit-tree", snapshot.tree, "-p", snapshot.parent, "-F", "-", stdin=message, env=env
        )
        # the old value guards against anything else having moved our branch meanwhile
        self._git.run(
            "update-ref",
            "-m",
            "outloop: iteration",
            f"refs/heads/{self.branch}",
            sha,
            snapshot.parent,
        )
        # HEAD is the branch (symbolic), so the index already matches the new commit.
        return sha

    def restore(self, keep: Iterable[str] = ()) -> list[str]:
        """Undo whatever changed since the last commit, except ``keep``; return what was undone.

        Used after the goal ran: a verifier must not leave changes that the
        next agent turn would be blamed (and committed) for.
        """
        keep_set = set(keep)
        changes = [c for c in self.changes() if c.path not in keep_set]
        if not changes:
            return []
        tracked = [c.path for c in changes if c.status != "??"]
        untracked = [c.path for c in changes if c.status == "??"]
        if tracked:
            self._git.run(
                "--literal-pathspecs",
                "checkout",
                "HEAD",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                stdin="\0".join(tracked) + "\0",
            )
        for rel in untracked:
            target = self.path / rel
            if target.is_symlink() or target.is_file():
                target.unlink()
            _remove_empty_parents(target.parent, self.path)
        return [c.path for c in changes]


def _remove_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def repair_git_links(path: Path, common_dir: Path) -> list[Path]:
    """Put back the files that tell git where a run's worktree belongs; return those changed.

    Written without running git: a ``.git`` file rewritten to point at a git dir
    of the agent's (left by a turn that crashed before the guard could look)
    would make outloop's next git command read that git dir's config and run
    its filters. The admin dir is ``<common dir>/worktrees/<run id>``, where
    ``git worktree add`` put it; when it is not there, nothing is touched.
    """
    admin = common_dir / "worktrees" / path.name
    if not admin.is_dir():
        return []
    wanted = {
        path / ".git": f"gitdir: {admin}\n",
        admin / "commondir": "../..\n",
        admin / "gitdir": f"{path / '.git'}\n",
    }
    changed = []
    for file, text in wanted.items():
        if _points_to(file, text, relative_to=admin):
            continue
        if file.is_dir() and not file.is_symlink():
            shutil.rmtree(file)
        else:
            file.unlink(missing_ok=True)
        file.write_text(text)
        changed.append(file)
    return changed


def _points_to(file: Path, wanted: str, *, relative_to: Path) -> bool:
    """Whether ``file`` names the same place as ``wanted`` (spelled alike or not)."""
    if file.is_symlink() or not file.is_file():
        return False
    try:
        have = file.read_text().strip().removeprefix("gitdir:").strip()
    except (OSError, UnicodeDecodeError):
        return False
    want = wanted.strip().removeprefix("gitdir:").strip()
    return (relative_to / have).resolve() == (relative_to / want).resolve()
