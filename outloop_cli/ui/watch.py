"""Noticing that a run changed, without asking the browser to poll.

One task in the server stats each run's few files (run.json, audit.jsonl,
the stop request) and probes its lock at a modest interval; only what differs
from the last look is announced. A runner killed with ``kill -9`` changes no
file, but its lock comes free: that is in the fingerprint too, so the page
turns the run to crashed without a reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.store.locks import is_running
from outloop_cli.ui.sources import RunHandle, RunSource

Fingerprint = tuple[object, ...]


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def fingerprint(run: RunHandle) -> Fingerprint:
    paths = run.paths
    return (
        _stat(paths.run_json),
        _stat(paths.audit),
        paths.stop_request.exists(),
        is_running(paths),
    )


@dataclass(frozen=True)
class Changes:
    """Which runs changed or went away since the last look."""

    changed: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


class Watcher:
    def __init__(self, source: RunSource) -> None:
        self._source = source
        self._seen: dict[str, Fingerprint] = {}

    def look(self) -> Changes:
        """What changed since the last look (everything, the first time)."""
        current = {run.run_id: fingerprint(run) for run in self._source.runs()}
        changed = tuple(rid for rid, fp in current.items() if self._seen.get(rid) != fp)
        removed = tuple(rid for rid in self._seen if rid not in current)
        self._seen = current
        return Changes(changed, removed)
