"""What ``outloop status`` made of each finished run, kept so the next listing reads one file.

A listing of a hundred runs used to read and parse a hundred run.json files
and build a record from each, on every ``status`` (and every refresh of a
watch or a prompt that calls it), although a finished run's record no longer
changes. This file, ``<git-common-dir>/outloop/listing-cache.json``, keeps
for each finished run the summary ``status`` shows, with the identity of the
run.json it was made from as ``stat`` gives it: device, inode, size, and the
modification and change times to the nanosecond. An entry is used only while
run.json is still exactly that file. Every write outloop makes replaces
run.json (a new inode), and an edit in place changes its change time, which
no process can set back.

Two edits in place within one tick of the kernel's clock, to the same size,
would look alike; so, as git does not trust an index entry as new as the
index itself ("racily clean"), a record written less than a second before it
was read is not kept. Live records (running, waiting for an approval) are
never kept: their state is decided by their lock at every listing.

The cache is only a shortcut: a cache that is damaged, of another version or
unreadable is ignored, and one that cannot be written is no error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# bumped whenever what an entry holds changes meaning; a cache of another format is ignored
FORMAT = 1
FILE_NAME = "listing-cache.json"
# a record whose change time is this close to the moment it was read is not kept
RACY_NS = 1_000_000_000

FileKey = tuple[int, int, int, int, int]


def file_key(stat: os.stat_result) -> FileKey:
    """The identity of one version of a file: it changes with any write to it or over it."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def cache_path(runs_root: Path) -> Path:
    """Beside ``runs/``, not in it: the run directories are all that ``runs/`` holds."""
    return runs_root.parent / FILE_NAME


class ListingCache:
    """The entries of one repository's listing cache, loaded once and saved when changed."""

    def __init__(self, path: Path, version: str, entries: dict[str, tuple[FileKey, Any]]) -> None:
        self.path = path
        self.version = version
        self._entries = entries
        self._changed = False

    @classmethod
    def load(cls, runs_root: Path, version: str) -> ListingCache:
        """The cache as it is on disk, or an empty one when there is none that can be trusted."""
        path = cache_path(runs_root)
        return cls(path, version, _read_entries(path, version))

    def get(self, run_id: str, key: FileKey) -> Any:
        """What was kept for ``run_id`` while its run.json was ``key``, or None."""
        entry = self._entries.get(run_id)
        if entry is None or entry[0] != key:
            return None
        return entry[1]

    def put(self, run_id: str, key: FileKey, summary: Any, *, read_at_ns: int) -> None:
        """Keep ``summary`` for this version of run.json, unless it is too new to be told apart."""
        if read_at_ns - key[4] < RACY_NS:
            self.forget(run_id)
            return
        if self._entries.get(run_id) != (key, summary):
            self._entries[run_id] = (key, summary)
            self._changed = True

    def forget(self, run_id: str) -> None:
        if self._entries.pop(run_id, None) is not None:
            self._changed = True

    def keep_only(self, run_ids: set[str]) -> None:
        """Drop the entries of runs that are gone."""
        for run_id in [run_id for run_id in self._entries if run_id not in run_ids]:
            self.forget(run_id)

    def save(self) -> None:
        """Write the cache if it changed; a repository we cannot write to keeps no cache."""
        if not self._changed:
            return
        document = {
            "format": FORMAT,
            "version": self.version,
            "runs": {
                run_id: {"key": list(key), "summary": summary}
                for run_id, (key, summary) in sorted(self._entries.items())
            },
        }
        # ASCII: a record may hold a lone surrogate (escaped in its JSON), which UTF-8 cannot
        data = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        try:
            from outloop_cli.store.atomic import atomic_write_bytes

            # not durable: a cache lost in a crash is rebuilt by the next listing
            atomic_write_bytes(self.path, data, durable=False)
        except OSError:
            return
        self._changed = False


def _read_entries(path: Path, version: str) -> dict[str, tuple[FileKey, Any]]:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser goes, which no cache we write has
        return {}
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or document.get("version") != version
        or not isinstance(document.get("runs"), dict)
    ):
        return {}
    entries: dict[str, tuple[FileKey, Any]] = {}
    for run_id, entry in document["runs"].items():
        key = _key(entry.get("key")) if isinstance(entry, dict) else None
        if key is None:
            # one entry damaged: the file was not written by us as it is, so trust none of it
            return {}
        entries[run_id] = (key, entry.get("summary"))
    return entries


def _key(value: Any) -> FileKey | None:
    if not isinstance(value, list) or len(value) != 5:
        return None
    if not all(isinstance(part, int) and not isinstance(part, bool) for part in value):
        return None
    return (value[0], value[1], value[2], value[3], value[4])
