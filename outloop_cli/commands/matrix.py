"""``outloop matrix``: the repository's loops as a GitHub Actions ``strategy.matrix``.

One job per loop is how outloop scales past one machine: each job runs one
loop (one client's, say) on its own runner, in parallel. The output is
``{"include": [{"loop": …, …}]}`` so a workflow can say
``matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}`` and use ``matrix.loop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from outloop_cli.config.loader import load_loop_file
from outloop_cli.config.source import find_loop_files
from outloop_cli.errors import ConfigError, Problem, UsageError
from outloop_cli.git.repo import discover

# GitHub Actions runs at most 256 jobs from one matrix
MAX_JOBS = 256


def loop_matrix(cwd: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Every loop (or the named ones), checked; a loop with a problem fails the whole plan."""
    root = discover(cwd).root
    files = find_loop_files(root)
    if not files:
        raise UsageError(
            "no loops in .outloop/ to build a matrix from",
            hint="create one with `outloop init` and commit it",
        )
    problems: list[Problem] = []
    include: list[dict[str, Any]] = []
    names = {path.stem for path in files}
    for wanted in only or []:
        if wanted not in names:
            raise UsageError(f"no loop `{wanted}`", hint="loops here: " + ", ".join(sorted(names)))
    for path in files:
        if only and path.stem not in only:
            continue
        try:
            config = load_loop_file(path, repo_root=root)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        entry: dict[str, Any] = {
            "loop": config.name,
            "goal": "ci" if config.goal.ci is not None else "run",
            "agent": config.agent.preset,
        }
        if config.description:
            entry["description"] = config.description
        include.append(entry)
    if problems:
        raise ConfigError(problems)
    if len(include) > MAX_JOBS:
        raise UsageError(
            f"{len(include)} loops make more jobs than one GitHub Actions matrix takes ({MAX_JOBS})",
            hint="name the loops for each matrix (`outloop matrix a b c`) and use several jobs",
        )
    return {"include": include}
