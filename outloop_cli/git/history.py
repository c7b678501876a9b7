"""Reading a run's commits after the fact: which files an iteration changed, and its patch.

Run on the run's own git dir (named explicitly, isolated config), so an
agent's gitfile, hooks or attributes never decide what a reader is shown:
no textconv, no external diff, no colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.git.cli import Git

_SHA_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ChangedFile:
    """One file a commit changed, with git's status letter."""

    # git's letter: A added, M modified, D deleted, T type changed
    status: str
    path: str


@dataclass(frozen=True)
class CommitDiff:
    """The files and patch of one commit, cut to a size."""

    files: tuple[ChangedFile, ...]
    patch: str
    # the patch was cut at the size asked for
    truncated: bool


def is_sha(value: str) -> bool:
    return 4 <= len(value) <= 64 and set(value) <= _SHA_CHARS


def commit_diff(git_dir: Path, old: str | None, new: str, *, max_bytes: int) -> CommitDiff:
    """What ``new`` changed since ``old`` (its first parent when None), cut at ``max_bytes``."""
    for sha in (old, new):
        if sha is not None and not is_sha(sha):
            raise ValueError(f"not a commit id: {sha!r}")
    git = Git(git_dir, git_dir=git_dir)
    revs = [old, new] if old is not None else ["--root", new]
    common = ("-r", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color")
    names = git.run(
        "diff-tree", *common, "--name-status", "-z", "--no-commit-id", *revs, strip=False
    )
    fields = names.split("\0")
    files: list[ChangedFile] = []
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if status and path:
            files.append(ChangedFile(status=status[:1], path=path))
    patch = git.run("diff-tree", *common, "-p", "--no-commit-id", *revs, strip=False)
    truncated = len(patch) > max_bytes
    return CommitDiff(tuple(files), patch[:max_bytes], truncated)
