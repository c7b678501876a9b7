"""``outloop validate``: check loop files and report every problem with its file, line and column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from outloop_cli.config.loader import LOOP_SUFFIXES, check_loop_files, display_path
from outloop_cli.config.model import LoopConfig
from outloop_cli.config.source import (
    LOOP_DIR,
    committed_file_problems,
    committed_files_named,
    find_loop_files,
    loop_file_candidates,
)
from outloop_cli.errors import Problem, UsageError
from outloop_cli.git.repo import RepoInfo, Repository, discover


def validate(
    cwd: Path, files: Sequence[Path], *, start: str = "HEAD"
) -> tuple[list[Path], list[Problem]]:
    """Check the given files (or every loop file); return what was checked and every problem.

    Files named on the command line are checked even outside a git repository
    (an editor or a pre-commit hook may validate a single file); finding the
    loops by themselves needs the repository. In a repository, the files a loop
    names (``agent.prompt_file``, ``ca_bundle``) are looked up in ``start``, the
    commit a run would read them from.
    """
    if files:
        try:
            info: RepoInfo | None = discover(cwd)
        except UsageError:
            info = None
        root = info.root if info is not None else None
        targets = [_resolve(cwd, path, root) for path in files]
    else:
        info = discover(cwd)
        root = info.root
        targets = find_loop_files(root)
        if not targets:
            raise UsageError(
                f"no loop files in {root / LOOP_DIR}",
                hint="create one with `outloop init`, or name the files to check",
            )
    configs, problems = check_loop_files(targets, repo_root=root)
    if info is not None:
        problems.extend(_committed_files(Repository(info), start, configs, problems))
    return targets, problems


def _committed_files(
    repo: Repository,
    start: str,
    configs: Sequence[tuple[Path, LoopConfig]],
    found: Sequence[Problem],
) -> list[Problem]:
    """For each valid loop inside the repository, the files it names that ``start`` lacks."""
    bad = {p.file for p in found}
    valid = [(display_path(target, repo.info.root), config) for target, config in configs]
    valid = [(shown, config) for shown, config in valid if shown not in bad]
    if not valid:
        return []
    # a loop file outside the repository names no files of it
    inside = [(shown, config) for shown, config in valid if not shown.startswith("/")]
    if start == "HEAD" and not any(committed_files_named(config) for _, config in inside):
        # nothing to look up in the commit (the common loop: an inline prompt, no CA
        # bundle), so no git process; a `--from` other than HEAD is still resolved
        return []
    try:
        commit = repo.resolve_commit(start)
    except UsageError:
        if start != "HEAD":
            raise
        # no commit yet: `run` will say so; the files themselves are fine
        return []
    problems: list[Problem] = []
    for shown, config in inside:
        problems.extend(committed_file_problems(repo, commit, config, file=shown))
    return problems


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
