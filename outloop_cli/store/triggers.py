"""What triggers did: one line per start or skip, and the fire times already claimed.

``<git common dir>/outloop/triggers.jsonl`` gets a line for every triggered
start and every skip (a trigger that fired while the loop was still running,
or a schedule fire time that already started a run): a storm of triggers
leaves lines here, never a queue of runs. Claiming a fire time reads and
appends under an exclusive ``flock``, so two starts racing for the same fire
time cannot both win.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from outloop_cli.paths import runs_root
from outloop_cli.timefmt import now_iso

LEDGER = "triggers.jsonl"


def ledger_path(common_dir: Path) -> Path:
    return runs_root(common_dir).parent / LEDGER


@contextmanager
def _locked(common_dir: Path) -> Iterator[Path]:
    path = ledger_path(common_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


def _append(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")


def read_ledger(common_dir: Path) -> list[dict[str, Any]]:
    path = ledger_path(common_dir)
    entries = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def record_skip(common_dir: Path, loop: str, kind: str, summary: str, reason: str) -> None:
    with _locked(common_dir) as path:
        _append(
            path,
            {
                "at": now_iso(),
                "loop": loop,
                "outcome": "skipped",
                "kind": kind,
                "summary": summary,
                "reason": reason,
            },
        )


def claim(common_dir: Path, loop: str, kind: str, summary: str, key: str | None) -> bool:
    """Record a start; False (and a skip line) when ``key`` already started a run of ``loop``."""
    with _locked(common_dir) as path:
        if key is not None:
            for entry in read_ledger(common_dir):
                if (
                    entry.get("loop") == loop
                    and entry.get("key") == key
                    and entry.get("outcome") == "started"
                ):
                    _append(
                        path,
                        {
                            "at": now_iso(),
                            "loop": loop,
                            "outcome": "skipped",
                            "kind": kind,
                            "summary": summary,
                            "key": key,
                            "reason": f"{key} already started a run at {entry.get('at')}",
                        },
                    )
                    return False
        _append(
            path,
            {
                "at": now_iso(),
                "loop": loop,
                "outcome": "started",
                "kind": kind,
                "summary": summary,
                "key": key,
            },
        )
        return True
