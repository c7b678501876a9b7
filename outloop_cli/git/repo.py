"""The user's repository: found, read at a commit, and touched only through ref-creating commands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.errors import GitError, UsageError
from outloop_cli.git.cli import Git

if TYPE_CHECKING:
    # imported where used: `outloop status` needs only `discover`, and these two (with the
    # worktree's run git dirs) cost it a twentieth of its start
    from outloop_cli.git import trailers
    from outloop_cli.git.worktree import Identity

FALLBACK_COMMITTER = ("outloop", "outloop@localhost")


@dataclass(frozen=True)
class RepoInfo:
    """The user's checkout: its root and its common git dir."""

    root: Path
    common_dir: Path

    @property
    def name(self) -> str:
        return self.root.name


def discover(start: Path) -> RepoInfo:
    """Find the repository containing ``start`` (the user's checkout)."""
    if not start.exists():
        raise UsageError(f"{start} does not exist")
    git = Git(start)
    try:
        out = git.run(
            "rev-parse",
            "--show-toplevel",
            "--path-format=absolute",
            "--git-common-dir",
            strip=False,
        ).removesuffix("\n")
    except GitError as exc:
        raise UsageError(
            f"{start} is not inside a git repository",
            hint="run outloop from a git checkout, or create one with `git init`",
        ) from exc
    lines = out.split("\n")
    if len(lines) > 2:
        # a path holding a line break: one answer per call, so nothing is cut at it
        lines = [
            git.run("rev-parse", "--show-toplevel", strip=False).removesuffix("\n"),
            git.run(
                "rev-parse", "--path-format=absolute", "--git-common-dir", strip=False
            ).removesuffix("\n"),
        ]
    if len(lines) < 2 or not lines[0]:
        raise UsageError(
            f"{start} is not inside a git work tree",
            hint="outloop runs in a checkout, not a bare repo",
        )
    return RepoInfo(root=Path(lines[0]), common_dir=Path(lines[1]))


class Repository:
    """The user's repository, touched only through read-only and ref-creating commands."""

    def __init__(self, info: RepoInfo) -> None:
        self.info = info
        self._git = Git(info.root)

    def resolve_commit(self, rev: str) -> str:
        try:
            return self._git.run("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        except GitError as exc:
            if rev == "HEAD":
                raise UsageError(
                    "this repository has no commits yet",
                    hint="commit your loop files first: outloop reads config from a commit",
                ) from exc
            raise UsageError(
                f"`{rev}` is not a commit in this repository",
                hint="name a branch, a tag or a commit of this repository",
            ) from exc

    def read_file(self, commit: str, path: str) -> bytes | None:
        """A file's content at ``commit``, or None when it is not there."""
        listing = self._git.run("ls-tree", "-z", "--full-tree", commit, "--", path, strip=False)
        if not listing:
            return None
        mode_type, _, _ = listing.partition("\t")
        _, obj_type, sha = mode_type.split(" ")
        if obj_type != "blob":
            return None
        return self._git.run("cat-file", "blob", sha, strip=False).encode(errors="surrogateescape")

    def list_files(self, commit: str, directory: str) -> list[str]:
        out = self._git.run(
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
        out = self._git.run(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", ok_codes=(0, 1)
        )
        return bool(out)

    def branch_head(self, branch: str) -> str | None:
        out = self._git.run(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", ok_codes=(0, 1)
        )
        return out or None

    def create_branch(self, branch: str, commit: str) -> None:
        """Create the run's branch at ``commit``; it must not exist yet."""
        self._git.run(
            "update-ref", "-m", "outloop: run started", f"refs/heads/{branch}", commit, ""
        )

    def import_branch(self, own_git_dir: Path, branch: str, expected: str | None = None) -> str:
        """Bring the run's branch from outloop's git dir into this repository; its new head.

        Only ever a fast-forward of the user's ref (someone else moving it is
        not overwritten), objects checked as they come in, no tags, no
        submodules, nothing written to FETCH_HEAD. The source is outloop's own
        git dir, never the agent's. ``expected`` is the commit outloop just put
        on the branch there: a fetch that succeeded left the user's ref on it,
        so git need not be asked again.
        """
        ref = f"refs/heads/{branch}"
        self._git.run(
            "-c",
            "transfer.fsckObjects=true",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "-c",
            "fetch.writeCommitGraph=false",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
            str(own_git_dir),
            f"{ref}:{ref}",
        )
        if expected is not None:
            return expected
        return self._git.run("rev-parse", "--verify", ref)

    def import_commit(
        self, branch: str, commit: str, previous: str, *, complete: bool = False
    ) -> bool:
        """Move the run's branch here from ``previous`` to ``commit``; False if it cannot be so.

        The run writes its objects into this repository's object store, so an
        iteration commit on top of one already imported needs no fetch: only
        when git finds every object ``commit`` brings (``--missing=print``
        lists any it lacks) is the ref moved, and only from ``previous``
        (compare and swap: someone else moving it is not overwritten). False
        (nothing changed) sends the caller to :meth:`import_branch`.
        ``complete``: the caller knows every object is here (its git dir holds
        none of its own), so git need not list them.
        """
        if not complete:
            listed = self._git.run(
                "rev-list", "--objects", "--missing=print", commit, "--not", previous, "--"
            )
            if any(line.startswith("?") for line in listed.splitlines()):
                return False
        ref = f"refs/heads/{branch}"
        self._git.run("update-ref", "-m", "outloop: iteration", ref, commit, previous)
        return True

    def remove_worktree(self, path: Path) -> None:
        """Remove a worktree of the older layout (``git worktree add``, before private git dirs)."""
        if path.exists():
            self._git.run("worktree", "remove", "--force", "--force", str(path))
        self._git.run("worktree", "prune")

    def committer(self) -> Identity:
        """The user's identity as git would use it, or a fallback when none is set."""
        name = os.environ.get("GIT_COMMITTER_NAME") or self._config("user.name")
        email = os.environ.get("GIT_COMMITTER_EMAIL") or self._config("user.email")
        from outloop_cli.git.worktree import Identity

        return Identity(name or FALLBACK_COMMITTER[0], email or FALLBACK_COMMITTER[1])

    def _config(self, key: str) -> str | None:
        out = self._git.run("config", "--get", key, ok_codes=(0, 1))
        return out or None

    def remote_url(self, name: str = "origin") -> str | None:
        return self._config(f"remote.{name}.url")

    def remotes(self) -> dict[str, str]:
        """Each remote's (first) URL, by name."""
        found: dict[str, str] = {}
        for remote in self._git.run("remote").split():
            urls = self._git.run("remote", "get-url", remote, ok_codes=(0, 2, 128))
            if urls:
                found[remote] = urls.splitlines()[0]
        return found

    def remote_urls(self) -> list[str]:
        """Every URL of every remote, in git's order."""
        urls: list[str] = []
        for remote in self._git.run("remote").split():
            urls += self._git.run("remote", "get-url", "--all", remote).splitlines()
        return urls

    def prune_worktrees(self) -> None:
        """Forget worktrees whose directories are gone."""
        self._git.run("worktree", "prune")

    def linked_worktrees(self) -> list[Path]:
        """Every linked worktree git knows for this repository (not the main checkout)."""
        # not -z: that needs git 2.36, and our own worktree paths hold no newline
        out = self._git.run("worktree", "list", "--porcelain")
        paths = [
            line.removeprefix("worktree ")
            for line in out.splitlines()
            if line.startswith("worktree ")
        ]
        # the first entry is the main worktree
        return [Path(p) for p in paths[1:]]

    def trailers(
        self,
        revisions: Sequence[str],
        keys: Sequence[str],
        *,
        reverse: bool = False,
        first_parent: bool = False,
    ) -> list[trailers.CommitTrailers]:
        from outloop_cli.git import trailers

        return trailers.read(
            self.info.root, revisions, keys, reverse=reverse, first_parent=first_parent
        )

    def log_summary(self, base: str, branch: str) -> str:
        """``<short sha> <author>: <subject>`` per commit of ``base..branch``, newest first."""
        return self._git.run("log", "--format=%h %an: %s", f"{base}..{branch}", "--")


def create_repository(path: Path, *, message: str, identity: Mapping[str, str]) -> Repository:
    """``git init`` a directory and commit everything in it as the first commit on main."""
    git = Git(path)
    git.run("init", "--quiet", "--initial-branch=main")
    git.run("add", "--all")
    git.run("commit", "--quiet", "-m", message, env=identity)
    return Repository(RepoInfo(root=path, common_dir=path / ".git"))
