"""The git seam: every git command outloop runs goes through this module.

It finds the user's repository, reads files from the starting commit, makes
the run's worktree and scratch branch, and turns what an agent changed into
one commit with trailers. It never touches the user's checkout: all writes
happen in the run's own worktree, on its own branch, through plumbing
(``write-tree``/``commit-tree``/``update-ref``) so no hook or config of the
user's runs on an agent's commit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from outloop_cli.errors import GitError, UsageError
from outloop_cli.process import ProgramNotFound, run_captured

# Variables that would point git somewhere other than the directory we name
# (set when outloop is started from a git hook, for instance).
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)

FALLBACK_COMMITTER = ("outloop", "outloop@localhost")


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True)
class RepoInfo:
    root: Path
    common_dir: Path

    @property
    def name(self) -> str:
        return self.root.name


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


class Git:
    """Runs git in one directory and turns failures into ``GitError``.

    Plain git CLI through the process seam rather than GitPython: we need
    exact control of the environment (GitPython always merges ``os.environ``,
    so a ``GIT_DIR`` inherited from a hook would redirect it), every command
    we use is plumbing with machine-readable output, and it keeps GitPython's
    ~100 ms import off the start-up path.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def run(
        self,
        *args: str,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        strip: bool = True,
        ok_codes: Sequence[int] = (0,),
    ) -> str:
        full_env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        # never block on a prompt: outloop runs unattended
        full_env["GIT_TERMINAL_PROMPT"] = "0"
        full_env.update(env or {})
        data = stdin.encode() if isinstance(stdin, str) else stdin
        try:
            done = run_captured(["git", *args], cwd=self.cwd, env=full_env, stdin_data=data)
        except ProgramNotFound:
            raise GitError(
                args, "git not found", hint="install git and make sure it is on PATH"
            ) from None
        if done.returncode not in ok_codes:
            raise GitError(args, done.stderr.decode(errors="replace"))
        out = done.stdout.decode(errors="surrogateescape")
        return out.rstrip("\n") if strip else out


def discover(start: Path) -> RepoInfo:
    """Find the repository containing ``start`` (the user's checkout)."""
    if not start.exists():
        raise UsageError(f"{start} does not exist")
    try:
        out = Git(start).run(
            "rev-parse", "--show-toplevel", "--path-format=absolute", "--git-common-dir"
        )
    except GitError as exc:
        raise UsageError(
            f"{start} is not inside a git repository",
            hint="run outloop from a git checkout, or create one with `git init`",
        ) from exc
    lines = out.splitlines()
    if len(lines) < 2:
        raise UsageError(
            f"{start} is not inside a git work tree",
            hint="outloop runs in a checkout, not a bare repo",
        )
    return RepoInfo(root=Path(lines[0]), common_dir=Path(lines[1]))


class Repository:
    """The user's repository, touched only through read-only and ref-creating commands."""

    def __init__(self, info: RepoInfo) -> None:
        self.info = info
        self.git = Git(info.root)

    def resolve_commit(self, rev: str) -> str:
        try:
            return self.git.run("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        except GitError as exc:
            if rev == "HEAD":
                raise UsageError(
                    "this repository has no commits yet",
                    hint="commit your loop files first: outloop reads config from a commit",
                ) from exc
            raise UsageError(f"`{rev}` is not a commit in this repository") from exc

    def read_file(self, commit: str, path: str) -> bytes | None:
        """A file's content at ``commit``, or None when it is not there."""
        listing = self.git.run("ls-tree", "-z", "--full-tree", commit, "--", path, strip=False)
        if not listing:
            return None
        mode_type, _, _ = listing.partition("\t")
        _, obj_type, sha = mode_type.split(" ")
        if obj_type != "blob":
            return None
        return self.git.run("cat-file", "blob", sha, strip=False).encode(errors="surrogateescape")

    def list_files(self, commit: str, directory: str) -> list[str]:
        out = self.git.run(
            "ls-tree",
            "-z",
            "--name-only",
            "--full-tree",
            commit,
            "--",
            f"{directory}/",
            strip=False,
        )
        return sorted(name for name in out.split("\0") if name)

    def branch_exists(self, branch: str) -> bool:
        out = self.git.run(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", ok_codes=(0, 1)
        )
        return bool(out)

    def branch_head(self, branch: str) -> str | None:
        out = self.git.run(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", ok_codes=(0, 1)
        )
        return out or None

    def add_worktree(self, path: Path, branch: str, commit: str) -> Worktree:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git.run("worktree", "add", "--quiet", "-b", branch, str(path), commit)
        return Worktree(path, branch)

    def reattach_worktree(self, path: Path, branch: str) -> Worktree:
        """Recreate a removed worktree for an existing branch (resume)."""
        self.git.run("worktree", "prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git.run("worktree", "add", "--quiet", str(path), branch)
        return Worktree(path, branch)

    def remove_worktree(self, path: Path) -> None:
        if path.exists():
            self.git.run("worktree", "remove", "--force", "--force", str(path))
        self.git.run("worktree", "prune")

    def committer(self) -> Identity:
        """The user's identity as git would use it, or a fallback when none is set."""
        name = os.environ.get("GIT_COMMITTER_NAME") or self._config("user.name")
        email = os.environ.get("GIT_COMMITTER_EMAIL") or self._config("user.email")
        return Identity(name or FALLBACK_COMMITTER[0], email or FALLBACK_COMMITTER[1])

    def _config(self, key: str) -> str | None:
        out = self.git.run("config", "--get", key, ok_codes=(0, 1))
        return out or None

    def remote_url(self, name: str = "origin") -> str | None:
        return self._config(f"remote.{name}.url")


class Worktree:
    """The run's own checkout; the only place where outloop writes files."""

    def __init__(self, path: Path, branch: str) -> None:
        self.path = path
        self.branch = branch
        self.git = Git(path)

    def head(self) -> str:
        return self.git.run("rev-parse", "HEAD")

    def changes(self) -> list[Change]:
        """Every path that differs from HEAD, untracked files included, ignored ones not."""
        out = self.git.run(
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
            self.git.run(
                "--literal-pathspecs",
                "add",
                "--all",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                stdin="\0".join(to_stage) + "\0",
            )
        tree = self.git.run("write-tree")
        # git may have staged nothing new (e.g. only mode noise); ask it what really changed
        changed = self.git.run(
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
        changed = self.git.run(
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
        sha = self.git.run(
            "commit-tree", snapshot.tree, "-p", snapshot.parent, "-F", "-", stdin=message, env=env
        )
        # the old value guards against anything else having moved our branch meanwhile
        self.git.run(
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
            self.git.run(
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
