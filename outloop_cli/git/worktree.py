"""The run's own checkout: what changed, a snapshot as a tree, a commit, a restore.

Every command here runs on outloop's own git dir for the run, named
explicitly with the work tree (:mod:`outloop_cli.git.rundirs`): the work
tree's ``.git`` file is the agent's and is never followed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from outloop_cli.errors import GitError
from outloop_cli.git import rundirs, trailers
from outloop_cli.git.alternates import parse_alternates
from outloop_cli.git.cli import Git
from outloop_cli.git.rundirs import RunGitDirs

# reading the agent's objects: a store made to be slow must not stall the run
_AGENT_OBJECTS_TIMEOUT = 120.0


@dataclass(frozen=True)
class Identity:
    """The author and committer name and email of outloop's commits."""

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
    # the commit's parent: outloop's last commit, or the agent's last own commit on top of it
    parent: str
    changed: tuple[str, ...]
    # paths left out because they are larger than allowed, with their size
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changed


_ITERATION_REFLOG = "outloop: iteration"
# when the index proper holds this many entries, and this share of the shared part's,
# the index is split anew (git's own splitIndex.maxPercentChange is 20 as well)
_RESPLIT_ENTRIES = 2000
_RESPLIT_PERCENT = 20


class Worktree:
    """The run's own checkout; the only place where outloop writes files."""

    def __init__(self, dirs: RunGitDirs, branch: str) -> None:
        self.dirs = dirs
        self.path = dirs.work_tree
        self.branch = branch
        self._git = dirs.git()
        # the user's object store, which outloop's git dir borrows from: where the run's
        # own objects (staged files, trees, commits) are written, so that importing an
        # iteration commit is one ref update instead of a fetch (see Repository.import_commit)
        user_objects = _first_alternate(dirs.own)
        if user_objects is not None:
            self._git = Git(
                dirs.work_tree,
                git_dir=dirs.own,
                work_tree=dirs.work_tree,
                objects=(user_objects, dirs.own / "objects"),
            )
        # outloop's last commit on the branch and its tree, once read: only this
        # object moves the branch (commit()), so it is not asked again every step,
        # and an agent that moved the ref behind outloop's back is caught by the
        # old value commit() hands to update-ref instead of being built upon
        self._head: tuple[str, str] | None = None

    def head(self) -> str:
        """outloop's last commit on the run's branch."""
        return self._head_and_tree()[0]

    def _head_and_tree(self) -> tuple[str, str]:
        if self._head is None:
            ref = f"refs/heads/{self.branch}"
            # one process for both (--verify takes a single revision; a missing ref fails
            # alike; the name is outloop's own refs/heads/..., never an option)
            found = self._git.run("rev-parse", f"{ref}^{{commit}}", f"{ref}^{{tree}}").split()
            if len(found) != 2:
                raise GitError(("rev-parse", ref), f"unexpected answer: {found!r}")
            self._head = (found[0], found[1])
        return self._head

    def agent_commits(self) -> list[str]:
        """The commits the agent made itself on top of outloop's last one, oldest first.

        Their objects are copied from the agent's git dir into outloop's (read
        through an alternate for this one command, never written there). A
        branch that is not a descendant of outloop's last commit (reset,
        rebased, another branch) gives nothing: only the work tree is kept then.
        """
        head = rundirs.agent_head(self.dirs, self.branch)
        last = self.head()
        if head is None or head == last:
            return []
        env = rundirs.agent_objects_env(self.dirs)
        if env is None:
            return []
        limit = _AGENT_OBJECTS_TIMEOUT
        try:
            self._git.run("merge-base", "--is-ancestor", last, head, env=env, timeout=limit)
            listed = self._git.run(
                "rev-list", "--reverse", "--first-parent", f"{last}..{head}", env=env, timeout=limit
            ).split()
            # only a straight line of commits on top of ours: a merge could bring anything in
            merges = self._git.run(
                "rev-list", "--min-parents=2", "--count", f"{last}..{head}", env=env, timeout=limit
            )
            if merges != "0":
                return []
            pack = self.dirs.own / "objects" / "pack" / "pack"
            self._git.run(
                "pack-objects",
                "--revs",
                "--quiet",
                str(pack),
                stdin=f"{head}\n^{last}\n",
                env=env,
                timeout=limit,
            )
        except GitError:
            return []
        return listed

    def commit_message_of(self, sha: str) -> bytes:
        """The raw commit object (headers and message) of a commit in outloop's git dir."""
        return self._git.run("cat-file", "commit", sha, strip=False).encode(
            errors="surrogateescape"
        )

    def commit_files(self, sha: str) -> list[tuple[str, bytes]]:
        """Each path a commit added or changed (against its first parent), with the blob."""
        out = self._git.run(
            "diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--root", sha, strip=False
        )
        fields = out.split("\0")
        found: list[tuple[str, bytes]] = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.lstrip(":").split(" ")
            if len(parts) < 5 or parts[4].startswith("D") or parts[1] == "160000":
                found.append((path, b""))
                continue
            blob = self._git.run("cat-file", "blob", parts[3], strip=False)
            found.append((path, blob.encode(errors="surrogateescape")))
        return found

    def is_ancestor(self, commit: str, ref: str) -> bool:
        """Whether ``commit`` is ``ref`` or in its history (False for an unknown commit)."""
        try:
            self._git.run("merge-base", "--is-ancestor", commit, ref)
        except GitError:
            # exit 1 (not an ancestor) and 128 (unknown commit) both mean: not ours
            return False
        return True

    def trailers(
        self, revisions: Sequence[str], keys: Sequence[str], *, reverse: bool = False
    ) -> list[trailers.CommitTrailers]:
        """The trailers of commits in outloop's git dir (all of the run's, imported or not)."""
        return trailers.read(self._git, revisions, keys, reverse=reverse, first_parent=True)

    def writes_only_to_user_store(self) -> bool:
        """Whether outloop's git dir holds no object of its own (only what it borrows).

        Then every object its git found, it found in the user's store (where it
        writes them): a commit made here is complete in the user's repository.
        Objects land here only when the agent's own commits are copied in, or
        from someone writing into this git dir behind outloop's back.
        """
        objects = self.dirs.own / "objects"
        try:
            with os.scandir(objects) as entries:
                names = {entry.name for entry in entries}
            with os.scandir(objects / "pack") as entries:
                packs = [entry.name for entry in entries]
            with os.scandir(objects / "info") as entries:
                info = {entry.name for entry in entries}
        except OSError:
            return False
        return names <= {"info", "pack"} and not packs and info <= {"alternates"}

    def git_dir(self) -> Path:
        """outloop's own git dir for the run."""
        return self.dirs.own

    def has_tree(self, sha: str) -> bool:
        """Whether ``sha`` names a tree object in the repository."""
        return self._git.run("cat-file", "-t", sha, ok_codes=(0, 1, 128)) == "tree"

    def binary_diff(self, old: str, new: str) -> str:
        """A patch from tree-ish ``old`` to ``new`` that ``git apply`` can replay, binaries too."""
        return self._git.run("diff", "--no-ext-diff", "--binary", old, new, "--", strip=False)

    def text_diff(self, old: str, new: str) -> str:
        """What changed from tree-ish ``old`` to ``new``, as a reader sees it (no binaries)."""
        return self._git.run(
            "diff", "--no-ext-diff", "--no-textconv", "--no-color", "--stat", "--patch",
            old, new, "--", strip=False,
        )  # fmt: skip

    def export_tree(
        self, tree: str, dest: Path, leave_out: Callable[[str], bool] | None = None
    ) -> int:
        """Write the files of ``tree`` under ``dest`` (regular files only); how many.

        ``leave_out(path)`` names files not to write.

        A symbolic link could point anywhere on the machine, a submodule is
        another repository: neither is written.
        """
        listing = self._git.run("ls-tree", "-r", "-z", "--full-tree", tree, strip=False)
        written = 0
        for entry in filter(None, listing.split("\0")):
            meta, _, path = entry.partition("\t")
            mode, kind, sha = meta.split(" ")
            if kind != "blob" or mode not in ("100644", "100755"):
                continue
            if leave_out is not None and leave_out(path):
                continue
            target = dest / path
            if ".." in Path(path).parts or not target.resolve().is_relative_to(dest.resolve()):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self._git.run("cat-file", "blob", sha, strip=False)
            target.write_bytes(data.encode(errors="surrogateescape"))
            target.chmod(0o555 if mode == "100755" else 0o444)
            written += 1
        return written

    def speed_up_status(self) -> None:
        """Two full-tree `git status` runs per iteration dominate on big repos: let git cache
        untracked directories, in this worktree's own index only (the user's is untouched)."""
        self._git.run(
            "update-index", "--untracked-cache", "--index-version", "4", ok_codes=(0, 1, 128)
        )

    def changes(self) -> list[Change]:
        """Every path that differs from HEAD, untracked files included, ignored ones not."""
        out = self._git.run(
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--ignore-submodules=all",
            strip=False,
        )
        changes = []
        for entry in out.split("\0"):
            if len(entry) > 3:
                changes.append(Change(path=entry[3:], status=entry[:2]))
        return changes

    def snapshot(
        self, changes: Sequence[Change], *, max_file_size: int, parent: str | None = None
    ) -> Snapshot:
        """Stage the given changes (minus oversized files) and write them as a tree.

        ``parent`` is the agent's own last commit when it made some (already
        scanned); what changed is always counted against outloop's last commit.
        """
        head, head_tree = self._head_and_tree()
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
        return Snapshot(
            tree=tree,
            parent=parent or head,
            changed=self._staged_paths(changes, to_stage, head, head_tree, tree),
            skipped=skipped,
        )

    def _staged_paths(
        self,
        changes: Sequence[Change],
        to_stage: Sequence[str],
        head: str,
        head_tree: str,
        tree: str,
    ) -> tuple[str, ...]:
        """The paths whose content in ``tree`` differs from outloop's last commit.

        When every change was made in the work tree only (the index still held
        HEAD's entry: nothing staged, ``X`` blank, or untracked), staging it
        cannot give back HEAD's entry, so the staged paths are exactly what
        changed, and an unchanged tree means nothing did. Anything staged
        already (by the agent's git, or an index changed behind outloop's back)
        could cancel out: then git is asked.
        """
        if tree == head_tree:
            return ()
        if all(c.status == "??" or c.status[0] == " " for c in changes):
            return tuple(to_stage)
        changed = self._git.run(
            "diff", "--cached", "--name-only", "-z", "--no-renames", head, strip=False
        )
        return tuple(p for p in changed.split("\0") if p)

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
        head = self.head()
        sha = self._git.run(
            "commit-tree", snapshot.tree, "-p", snapshot.parent, "-F", "-", stdin=message, env=env
        )
        # the old value guards against anything else having moved our branch meanwhile
        self._head = None
        moved = rundirs.move_own_branch(
            self.dirs,
            self.branch,
            sha,
            head,
            who=(committer.name, committer.email),
            message=_ITERATION_REFLOG,
        )
        if not moved:
            self._git.run(
                "update-ref", "-m", _ITERATION_REFLOG, f"refs/heads/{self.branch}", sha, head
            )
        self._head = (sha, snapshot.tree)
        self._keep_index_split()
        # HEAD is the branch (symbolic), so the index already matches the new commit;
        # the agent's git goes on from it
        rundirs.sync_agent(self.dirs, self.branch, sha)
        return sha

    def _keep_index_split(self) -> None:
        """Split the index anew when most of it has come to sit in the index proper.

        git keeps an entry whose stat data it refreshed in the index proper, and
        makes a new shared part only for entries added, never for those: after
        the second of a checkout (every entry "racily clean", all refreshed) each
        write of the index is every entry again. One ``--split-index`` then
        brings it back to what changed since.
        """
        counts = rundirs.split_index_entries(self.dirs.own)
        if counts is None:
            return
        own, shared = counts
        if own >= _RESPLIT_ENTRIES and own * 100 > shared * _RESPLIT_PERCENT:
            # only speed is at stake, and the commit is made: a failure here is no failure
            with contextlib.suppress(GitError):
                self._git.run("update-index", "--split-index")

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


def _first_alternate(own: Path) -> Path | None:
    """The object store outloop's git dir borrows first (the user's), if it is a directory."""
    objects = own / "objects"
    try:
        listed = parse_alternates((objects / "info" / "alternates").read_bytes(), objects)
    except OSError:
        return None
    # C-quoted as git reads it: the user's path may hold a line break
    first = listed[0] if listed else None
    return first if first is not None and first.is_dir() else None


def _remove_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def repair_git_link(dirs: RunGitDirs) -> bool:
    """Put back the work tree's ``.git`` file (pointing at the agent's git dir); True if changed.

    outloop's own git never follows it, but the agent's git does: a link left
    pointing at a git dir of someone else's (by a turn that crashed before the
    guard could look) is put back before the run goes on.
    """
    gitfile = dirs.work_tree / ".git"
    if not gitfile.is_symlink() and gitfile.is_file():
        try:
            if gitfile.read_text() == dirs.gitfile_text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
    if gitfile.is_dir() and not gitfile.is_symlink():
        import shutil  # with bz2, lzma and zlib: not on the start-up path of `status`

        shutil.rmtree(gitfile)
    gitfile.unlink(missing_ok=True)
    gitfile.write_text(dirs.gitfile_text)
    return True
