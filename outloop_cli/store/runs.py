"""Run records on disk: ``<git-common-dir>/outloop/runs/<run-id>/``.

Everything a run leaves lives in the git directory, never in the work tree,
and ``run.json`` is always replaced atomically so a reader (or a crash)
never sees half of it. Whether a run is alive is ``store/locks.py``'s answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.paths import runs_root

if TYPE_CHECKING:
    # imported where a record is built: a listing served from its cache builds none
    from outloop_cli.store.records import RunRecord


def new_run_id() -> str:
    """Sortable by start time, unique without coordination: ``20261122-081500-3fa9c2``."""
    # imported where they are used: readers (`outloop status`) need none of them
    import secrets

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunPaths:
    """Where the files of one run live under its directory."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def audit(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def junit(self) -> Path:
        return self.root / "junit.xml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def stop_request(self) -> Path:
        return self.root / "stop-requested"

    @property
    def approvals(self) -> Path:
        """Decisions on approval requests, one file per request (``outloop approve|deny``)."""
        return self.root / "approvals"

    @property
    def notes_inbox(self) -> Path:
        """Operator notes (``outloop say``) waiting for the next agent turn, oldest first."""
        return self.root / "say"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def own_git_dir(self) -> Path:
        """outloop's own git dir for the run (its index, branch and commits)."""
        return self.root / "git"

    @property
    def agent_git_dir(self) -> Path:
        """The agent's private git dir, which the work tree's ``.git`` file names."""
        return self.root / "agent.git"

    @property
    def run_id(self) -> str:
        return self.root.name


class RunStore:
    def __init__(self, common_dir: Path) -> None:
        self.root = runs_root(common_dir)

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.root / run_id)

    def create(self, run_id: str) -> RunPaths:
        paths = self.paths(run_id)
        paths.logs.mkdir(parents=True, exist_ok=False)
        return paths

    def save(self, record: RunRecord, *, durable: bool = True) -> None:
        """Replace run.json atomically; ``durable=False`` skips the fsyncs (progress only)."""
        from outloop_cli.store.atomic import atomic_write_bytes

        atomic_write_bytes(self.paths(record.run_id).run_json, record.to_json(), durable=durable)

    def load(self, run_id: str) -> RunRecord:
        return self._record(run_id, self.read(run_id))

    def read(self, run_id: str) -> Any:
        """run.json as it is on disk (parsed JSON), for readers that need less than a record."""
        return self.read_with_stat(run_id)[0]

    def read_with_stat(self, run_id: str) -> tuple[Any, os.stat_result]:
        """``read``, and the ``stat`` of the very file that was read (not of a later one)."""
        path = self.paths(run_id).run_json
        try:
            with path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                raw = handle.read()
            # bytes: json finds the UTF-8 the record is written in, whatever the locale says
            data = json.loads(raw)
        except FileNotFoundError:
            raise UsageError(
                f"no run `{run_id}` in this repository", hint="`outloop status` lists the runs"
            ) from None
        except ValueError as exc:
            raise CouldNotRun(
                f"{path} is not valid JSON: {exc}",
                hint="the run record was edited or damaged; its branch still holds the commits",
            ) from None
        return data, stat

    def _record(self, run_id: str, data: Any) -> RunRecord:
        from outloop_cli.store.records import RunRecord

        try:
            return RunRecord.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unreadable(run_id, exc) from None

    def record_from(self, run_id: str, data: dict[str, Any]) -> RunRecord:
        """The record of ``data`` (what ``read`` gave, or part of it), or why it is unreadable."""
        return self._record(run_id, data)

    def _unreadable(self, run_id: str, exc: Exception) -> CouldNotRun:
        path = self.paths(run_id).run_json
        return CouldNotRun(
            f"{path} is not a run record outloop can read ({type(exc).__name__}: {exc})",
            hint="the run record was edited or damaged; its branch still holds the commits",
        )

    def delete(self, run_id: str) -> None:
        """Drop a run's record directory; the caller holds the run's lock (see ``run_lock``)."""
        import shutil

        shutil.rmtree(self.paths(run_id).root)

    def run_ids(self) -> list[str]:
        return [run_id for run_id, _ in self.run_json_stats()]

    def run_json_stats(self) -> list[tuple[str, os.stat_result]]:
        """Every run (a directory holding a run.json file) with that file's ``stat``, by id."""
        try:
            entries = os.scandir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        # os.path, not a Path per run: `status` lists every run before it reads one
        with entries:
            names = [entry.name for entry in entries]
        root = str(self.root)
        found: list[tuple[str, os.stat_result]] = []
        for name in names:
            try:
                stat = os.stat(os.path.join(root, name, "run.json"))  # noqa: PTH116, PTH118
            except OSError:
                continue
            if S_ISREG(stat.st_mode):
                found.append((name, stat))
        return sorted(found, key=itemgetter(0))

    def resolve(self, prefix: str) -> str:
        """Accept a unique prefix or suffix of a run id, as git accepts short shas."""
        ids = self.run_ids()
        if prefix in ids:
            return prefix
        matches = [i for i in ids if i.startswith(prefix) or i.endswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(f"no run matches `{prefix}`", hint="`outloop status` lists the runs")
        raise UsageError(f"`{prefix}` matches {len(matches)} runs", hint="give more of the run id")


# -- liveness -------------------------------------------------------------------
