"""Where the dashboard finds runs: the one place that decides which runs exist.

Today: every run of the repositories named with ``--repo`` (the current one
by default), read through ``RunStore``. The machine-wide run index replaces
this module's body, not its callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import UsageError
from outloop_cli.git.repo import RepoInfo, discover
from outloop_cli.store.runs import RunPaths, RunStore


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    paths: RunPaths
    # the user's checkout: actions run from here, as a human would type them
    repo_root: Path
    common_dir: Path


class RunSource:
    def __init__(self, repos: list[Path]) -> None:
        infos: list[RepoInfo] = []
        for repo in repos:
            try:
                infos.append(discover(repo.resolve()))
            except UsageError as exc:
                raise UsageError(f"--repo {repo}: {exc.message}", hint=exc.hint) from None
        unique: dict[Path, RepoInfo] = {}
        for info in infos:
            unique.setdefault(info.common_dir, info)
        self._repos = list(unique.values())

    @property
    def repo_roots(self) -> list[Path]:
        return [info.root for info in self._repos]

    def runs(self) -> list[RunHandle]:
        found: list[RunHandle] = []
        for info in self._repos:
            store = RunStore(info.common_dir)
            found.extend(
                RunHandle(run_id, store.paths(run_id), info.root, info.common_dir)
                for run_id in store.run_ids()
            )
        return sorted(found, key=lambda run: run.run_id, reverse=True)

    def find(self, run_id: str) -> RunHandle | None:
        for run in self.runs():
            if run.run_id == run_id:
                return run
        return None
