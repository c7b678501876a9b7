"""The run's audit log: append-only JSON lines, each chained to the one before.

Every line carries ``prev``, the SHA-256 of the previous line's exact bytes
(64 zeros for the first), so that editing, deleting, inserting or reordering
any line breaks the chain at a line ``verify`` can name. Appends take an
exclusive ``flock`` and read the current tail from the file itself, so
several processes (the runner, ``outloop stop``, the credential helper git
starts) can write one log without interleaving or forking the chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

GENESIS = "0" * 64
# events whose loss in a crash would matter: written through to disk
DURABLE_EVENTS = frozenset(
    {
        "run_started",
        "committed",
        "run_stopped",
        "credential_granted",
        "credential_denied",
        "stop_requested",
        "run_resumed",
    }
)


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: str


def _read_last_line(handle: BinaryIO) -> bytes | None:
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    if end == 0:
        return None
    block = 4096
    pos = end
    data = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        data = handle.read(step) + data
        # the final byte is the last line's newline; look for the one before it
        idx = data.rstrip(b"\n").rfind(b"\n")
        if idx >= 0:
            return data[idx + 1 :].rstrip(b"\n")
    return data.rstrip(b"\n")


class AuditLog:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                last = _read_last_line(handle)
                if last is None:
                    seq, prev = 1, GENESIS
                else:
                    seq = int(json.loads(last)["seq"]) + 1
                    prev = line_hash(last)
                entry: dict[str, Any] = {
                    "seq": seq,
                    "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "run": self.run_id,
                    "event": event,
                    **fields,
                    "prev": prev,
                }
                line = json.dumps(entry, ensure_ascii=False, sort_keys=False).encode() + b"\n"
                handle.seek(0, os.SEEK_END)
                handle.write(line)
                handle.flush()
                if event in DURABLE_EVENTS:
                    os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return entry

    def head(self) -> ChainHead | None:
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            last = _read_last_line(handle)
        if last is None:
            return None
        return ChainHead(seq=int(json.loads(last)["seq"]), hash=line_hash(last))


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int
    head: ChainHead | None
    # 1-based line number of the first line that breaks the chain
    bad_line: int | None = None
    reason: str | None = None


def verify(path: Path, *, expected_head: ChainHead | None = None) -> VerifyResult:
    """Check every link; ``expected_head`` (kept elsewhere) also catches truncation at the end."""
    prev = GENESIS
    seq = 0
    head: ChainHead | None = None
    count = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            count = number
            line = raw.rstrip(b"\n")
            if not raw.endswith(b"\n"):
                return VerifyResult(
                    False, count, head, number, "last line is incomplete (no newline)"
                )
            try:
                entry = json.loads(line)
            except ValueError:
                return VerifyResult(False, count, head, number, "not valid JSON")
            if not isinstance(entry, dict):
                return VerifyResult(False, count, head, number, "not a JSON object")
            if entry.get("prev") != prev:
                return VerifyResult(
                    False, count, head, number, "prev does not match the hash of the line before"
                )
            if entry.get("seq") != seq + 1:
                return VerifyResult(
                    False, count, head, number, f"sequence {entry.get('seq')} after {seq}"
                )
            seq += 1
            prev = line_hash(line)
            head = ChainHead(seq=seq, hash=prev)
    if expected_head is not None and head != expected_head:
        got = f"{head.seq}" if head else "nothing"
        return VerifyResult(
            False,
            count,
            head,
            count + 1,
            f"chain ends at sequence {got}, but the run recorded sequence {expected_head.seq}: "
            "lines were removed from the end",
        )
    return VerifyResult(True, count, head)
