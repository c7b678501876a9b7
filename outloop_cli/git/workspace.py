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

# What outloop's own git commands may see of its environment. Anything else
# (an API token in the parent shell, say) stays out of reach of a hook or
# filter an agent might have planted in the repository's config.
_GIT_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "EMAIL",
        "SSH_AUTH_SOCK",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
    }
)
_GIT_ENV_PREFIXES = ("LC_", "GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_CONFIG_", "GIT_TRACE")

# Config an agent could set to make outloop's next git command run a program:
# neutralised on every command outloop runs (filters cannot be, so the config
# files themselves are guarded: see ConfigGuard).
_HARDENING = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "core.pager=cat",
)


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (k in _GIT_ENV_NAMES or k.startswith(_GIT_ENV_PREFIXES)) and k not in _GIT_LOCATION_VARS
    }
    # never block on a prompt: outloop runs unattended
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra or {})
    return env


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
        full_env = git_env(env)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        try:
            done = run_captured(
                ["git", *_HARDENING, *args], cwd=self.cwd, env=full_env, stdin_data=data
            )
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
        worktree = Worktree(path, branch)
        worktree.speed_up_status()
        return worktree

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

    def speed_up_status(self) -> None:
        """Two full-tree `git status` runs per iteration dominate on big repos: let git cache
        untracked directories, in this worktree's own index only (the user's is untouched)."""
        self.git.run(
            "update-index", "--untracked-cache", "--index-version", "4", ok_codes=(0, 1, 128)
        )

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


@dataclass
class ConfigGuard:
    """Git configuration and hooks outside the worktree, as they were when the run began.

    An agent that is not sandboxed can write ``.git/config`` (``core.fsmonitor``,
    ``filter.*``, ``remote.*.url``, ``include.path``...), the user's global git
    config or ``.git/hooks``: code that outloop's next git command, or the
    user's next commit, would run. The engine checks after each agent turn,
    puts the files back and stops the run when anything changed.
    """

    files: dict[Path, bytes | None]
    hook_dirs: dict[Path, dict[str, bytes]]

    @classmethod
    def capture(cls, worktree: Worktree, common_dir: Path) -> ConfigGuard:
        worktree_git_dir = Path(worktree.git.run("rev-parse", "--absolute-git-dir"))
        home = Path(os.environ.get("HOME", "~")).expanduser()
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        candidates = [
            common_dir / "config",
            common_dir / "config.worktree",
            worktree_git_dir / "config.worktree",
            home / ".gitconfig",
            Path(xdg) / "git" / "config",
        ]
        files = {path: _read_or_none(path) for path in dict.fromkeys(candidates)}
        hooks = {common_dir / "hooks": _read_dir(common_dir / "hooks")}
        return cls(files, hooks)

    def changed(self) -> list[Path]:
        found = [path for path, data in self.files.items() if _read_or_none(path) != data]
        found += [d for d, entries in self.hook_dirs.items() if _read_dir(d) != entries]
        return found

    def restore(self) -> None:
        for path, data in self.files.items():
            if _read_or_none(path) == data:
                continue
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        for directory, entries in self.hook_dirs.items():
            current = _read_dir(directory)
            for name in current.keys() - entries.keys():
                (directory / name).unlink(missing_ok=True)
            for name, data in entries.items():
                if current.get(name) != data:
                    (directory / name).write_bytes(data)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_dir(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
