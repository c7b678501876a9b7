"""Where the dashboard finds runs: the one place that decides which runs exist.

Every run on the machine, from the run index (``store/run_index.py``), plus the
runs of the repository the dashboard was started in (a run older than the
index is in its repository only). With ``--repo`` the dashboard shows those
repositories' runs and no others. An index entry that cannot be read, or whose
repository or run directory was deleted, is still a run to show: as
``unreadable`` or ``gone``, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import UsageError
from outloop_cli.git.repo import RepoInfo, discover
from outloop_cli.store.run_index import IndexEntry, index_dir, list_index
from outloop_cli.store.runs import RunPaths, RunStore

GONE = "gone"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class RunHandle:
    """A run a viewer can show and act on, and where its files are."""

    run_id: str
    paths: RunPaths
    # the user's checkout: actions run from here, as a human would type them
    repo_root: Path
    common_dir: Path
    workspace: str | None = None
    loop: str | None = None
    # set when the run cannot be read where it should be: (state, why)
    problem: tuple[str, str] | None = None


class RunSource:
    """``repos``: repositories whose runs are read directly; ``only``: and no other runs."""

    def __init__(self, repos: list[Path], *, only: bool) -> None:
        unique: dict[Path, RepoInfo] = {}
        for repo in repos:
            try:
                info = discover(repo.resolve())
            except UsageError as exc:
                raise UsageError(f"--repo {repo}: {exc.message}", hint=exc.hint) from None
            unique.setdefault(info.common_dir.resolve(), info)
        self._repos = list(unique.values())
        self._only = frozenset(unique) if only else None
        self._index: tuple[object, list[IndexEntry]] | None = None

    @property
    def repo_roots(self) -> list[Path]:
        """The repositories the dashboard is limited to (none: every run on the machine)."""
        return [info.root for info in self._repos] if self._only is not None else []

    def _entries(self) -> list[IndexEntry]:
        """The index, read again only when its directory changed.

        Entries are written by rename and removed by unlink, and either changes the
        directory's mtime: the watcher's every look costs one stat, not one read per run.
        """
        root = index_dir()
        try:
            st = root.stat()
            stamp: object = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if self._index is None or self._index[0] != stamp or stamp is None:
            self._index = (stamp, list_index())
        return self._index[1]

    def runs(self) -> list[RunHandle]:
        found: dict[str, RunHandle] = {}
        for entry in self._entries():
            if entry.problem is not None:
                if self._only is None:
                    problem = (UNREADABLE, entry.problem)
                    paths = RunPaths(entry.file.parent / entry.run_id)
                    found[entry.run_id] = RunHandle(
                        entry.run_id, paths, Path("?"), Path("?"), problem=problem
                    )
                continue
            if self._only is not None and entry.common_dir.resolve() not in self._only:
                continue
            gone = entry.gone_reason()
            found[entry.run_id] = RunHandle(
                entry.run_id,
                entry.paths,
                entry.repo_root,
                entry.common_dir,
                workspace=entry.workspace,
                loop=entry.loop,
                problem=(GONE, gone) if gone else None,
            )
        for info in self._repos:
            store = RunStore(info.common_dir)
            for run_id in store.run_ids():
                if run_id not in found or found[run_id].problem is not None:
                    found[run_id] = RunHandle(
                        run_id, store.paths(run_id), info.root, info.common_dir
                    )
        return sorted(found.values(), key=lambda run: run.run_id, reverse=True)

    def find(self, run_id: str) -> RunHandle | None:
        for run in self.runs():
            if run.run_id == run_id:
                return run
        return None
