"""``outloop validate``: check loop files and report every problem with its file, line and column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from outloop_cli.config.loader import LOOP_SUFFIXES, check_files
from outloop_cli.config.source import LOOP_DIR, find_loop_files, loop_file_candidates
from outloop_cli.errors import Problem, UsageError
from outloop_cli.git.repo import discover


def validate(cwd: Path, files: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """Check the given files (or every loop file); return what was checked and every problem.

    Files named on the command line are checked even outside a git repository
    (an editor or a pre-commit hook may validate a single file); finding the
    loops by themselves needs the repository.
    """
    if files:
        try:
            root: Path | None = discover(cwd).root
        except UsageError:
            root = None
        targets = [_resolve(cwd, path, root) for path in files]
        return targets, check_files(targets, repo_root=root)
    root = discover(cwd).root
    targets = find_loop_files(root)
    if not targets:
        raise UsageError(
            f"no loop files in {root / LOOP_DIR}",
            hint="create one with `outloop init`, or name the files to check",
        )
    return targets, check_files(targets, repo_root=root)


def _resolve(cwd: Path, given: Path, root: Path | None) -> Path:
    """A file as named, or for a bare name the loop of that name (like `outloop run NAME`)."""
    path = cwd / given
    bare = len(given.parts) == 1 and given.suffix not in LOOP_SUFFIXES
    if path.exists() or root is None or not bare:
        return path
    for candidate in loop_file_candidates(given.name):
        if (root / candidate).is_file():
            return root / candidate
    return path
