"""Run records on disk: ``<git-common-dir>/outloop/runs/<run-id>/``.

Everything a run leaves lives in the git directory, never in the work tree,
and ``run.json`` is always replaced atomically so a reader (or a crash)
never sees half of it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from outloop_cli.errors import UsageError
from outloop_cli.fsutil import atomic_write_json
from outloop_cli.paths import runs_root
from outloop_cli.records import RunRecord


def new_run_id() -> str:
    """Sortable by start time, unique without coordination: ``20261122-081500-3fa9c2``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunPaths:
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


class RunStore:
    def __init__(self, common_dir: Path) -> None:
        self.root = runs_root(common_dir)

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.root / run_id)

    def create(self, run_id: str) -> RunPaths:
        paths = self.paths(run_id)
        paths.logs.mkdir(parents=True, exist_ok=False)
        return paths

    def save(self, record: RunRecord) -> None:
        atomic_write_json(self.paths(record.run_id).run_json, record.to_dict())

    def load(self, run_id: str) -> RunRecord:
        path = self.paths(run_id).run_json
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"no run `{run_id}` in this repository", hint="`outloop status` lists the runs"
            ) from None
        return RunRecord.from_dict(data)

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "run.json").is_file())

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
