"""The run's audit log: append-only JSON lines, each chained to the one before.

Every line carries ``prev``, the SHA-256 of the previous line's exact bytes
(64 zeros for the first), so that editing, deleting, inserting or reordering
any line breaks the chain at a line ``verify`` can name. Appends take an
exclusive ``flock`` and read the current tail from the file itself, so
several processes (the runner, ``outloop stop``, the credential helper git
starts) can write one log without interleaving or forking the chain.

Under attack. An agent causes one event per request it makes, so it could
bury a run's record under its own noise (and its disk under fsyncs). Two
bounds keep the log readable, both in :class:`AuditLimits`:

- repeated refusals are coalesced: past ``repeat_threshold`` refusals of the
  same kind (same ``via``, credential and reason, whatever the path or
  method), further ones are counted, not written, and one
  ``credential_denied_repeated`` event says how many there were, with the
  first and last time and the last path; it is written before the run's next
  own event (so always before ``run_stopped``) and at least every
  ``repeat_window`` seconds while the count grows;
- the events an agent can multiply (``FLOOD_PRONE``) stop being written once
  the log holds ``max_bytes`` or ``max_events``; an ``audit_truncated`` event
  says so at that point, and another one, with how many were dropped and
  when, before the run's next own event. The run's own events (start,
  iterations, commits, stop) are always written: their number is bounded by
  the loop's limits, not by the agent.

Coalesced and truncated logs are ordinary chained logs: ``verify`` accepts
them, and nothing in them can be told from a log that was never attacked
except by the events that say what was left out.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outloop_cli.errors import CouldNotRun

if TYPE_CHECKING:
    from outloop_cli.store.chain_scan import BatchMacCheck, KeyEvent

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


# events an agent can cause as often as it likes: one per request or git call it makes
FLOOD_PRONE = frozenset(
    {
        "credential_denied",
        "credential_granted",
        "proxy_request",
        "credential_denied_repeated",
        # one per connection the agent opens through the egress proxy
        "egress",
    }
)
# refusals of one kind are the same event over and over: counted past a threshold
COALESCED = frozenset({"credential_denied"})
# what makes two refusals "the same"; the path and method are left out on purpose, so
# that varying them does not defeat the count
_REPEAT_KEY = ("workspace", "via", "name", "reason", "status")
_MAX_KINDS = 1000


@dataclass(frozen=True)
class AuditLimits:
    """How much of an attack the log records; the defaults fit any honest run many times over."""

    repeat_threshold: int = 20
    repeat_window: float = 60.0
    max_bytes: int = 8 * 1024 * 1024
    max_events: int = 50_000


DEFAULT_LIMITS = AuditLimits()


@dataclass
class _Repeats:
    """A run of identical audit events folded into one line with a count."""

    fields: dict[str, Any]
    first: str
    last: str
    since: float
    count: int = 0


@dataclass
class _Dropped:
    """Audit events dropped under the rate limit, counted by kind."""

    first: str
    last: str
    count: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """The sequence number and hash of the last line of an audit chain."""

    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}

    def trailer(self) -> str:
        """The value of the ``Outloop-Audit-Head`` commit trailer."""
        return f"{self.seq}:{self.hash}"

    @classmethod
    def from_dict(cls, data: object) -> ChainHead | None:
        """Read ``run.json``'s ``audit_head``; None when absent or malformed."""
        if not isinstance(data, dict):
            return None
        seq, digest = data.get("seq"), data.get("hash")
        if isinstance(seq, int) and not isinstance(seq, bool) and _is_sha256(digest):
            return cls(seq=seq, hash=str(digest))
        return None

    @classmethod
    def from_trailer(cls, value: str) -> ChainHead | None:
        """Parse ``<seq>:<sha256>``; None when it is not one."""
        seq_text, _, digest = value.strip().partition(":")
        if seq_text.isdigit() and _is_sha256(digest):
            return cls(seq=int(seq_text), hash=digest.lower())
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(ch in "0123456789abcdef" for ch in value.lower())
    )


def _read_last_line(fd: int, end: int) -> bytes | None:
    """The last line of the file open as ``fd``, ``end`` bytes long (without its newline)."""
    if end == 0:
        return None
    block = 4096
    pos = end
    data = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        # the final byte is the last line's newline; look for the one before it
        idx = data.rstrip(b"\n").rfind(b"\n")
        if idx >= 0:
            return data[idx + 1 :].rstrip(b"\n")
    return data.rstrip(b"\n")


def _write_all(fd: int, data: bytes) -> None:
    """``data`` appended in full (``O_APPEND``: at the end, whoever else holds the file)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _seq_of(line: bytes, path: Path) -> int:
    """The sequence number of the log's last line; a line outloop did not write stops the run."""
    try:
        entry = json.loads(line)
        return int(entry["seq"])
    except (ValueError, TypeError, KeyError):
        raise CouldNotRun(
            f"the audit log {path} was changed outside outloop: its last line is not an event",
            hint="run the agent with `sandbox: bwrap`; `outloop audit verify` shows the damage",
        ) from None


Seal = Callable[[bytes], str]
MacCheck = Callable[[bytes, str], bool]
# a sealed line ends with its MAC, over the line as it was before the MAC was added
_MAC_TAIL = re.compile(rb', "mac": "([0-9a-f]{64})"\}$')


def seal_line(body: bytes, seal: Seal) -> bytes:
    """``body`` (one JSON object) with ``"mac"`` added as its last member."""
    return body[:-1] + b', "mac": "' + seal(body).encode() + b'"}'


def unsealed(text: bytes) -> tuple[bytes, str] | None:
    """(the line as it was sealed, its MAC); None when the line carries no MAC."""
    match = _MAC_TAIL.search(text)
    if match is None:
        return None
    return text[: match.start()] + b"}", match.group(1).decode()


class AuditLog:
    def __init__(
        self,
        path: Path,
        run_id: str,
        limits: AuditLimits = DEFAULT_LIMITS,
        *,
        seal: Seal | None = None,
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.limits = limits
        # a MAC with the run's key on every line: a chain recomputed by someone without
        # the key (an agent outside a sandbox rewriting the log) no longer verifies
        self._seal = seal
        # the chain's head after this object's last append, so callers need not read it back
        self.last_head: ChainHead | None = None
        # (device, inode, size) of the log right after that append: found so again under
        # the lock, nobody else has written since, and the head need not be read back
        self._end: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        # refusals seen per kind, and those past the threshold not yet written as a count
        self._seen: dict[tuple[object, ...], int] = {}
        self._repeats: dict[tuple[object, ...], _Repeats] = {}
        # flood-prone events left out since the log reached its size bound
        self._dropped: _Dropped | None = None
        self._truncation_noted = False

    def append(self, event: str, **fields: Any) -> dict[str, Any] | None:
        """Write one event; None when it was counted instead (coalesced or past the bound)."""
        with self._lock:
            now = _now()
            if event in COALESCED:
                key = (event, *(fields.get(k) for k in _REPEAT_KEY))
                if key not in self._seen and len(self._seen) >= _MAX_KINDS:
                    # a name is what the agent typed in the URL: past this many kinds,
                    # the rest count as one per way and reason, so memory stays bounded
                    key = (event, None, fields.get("via"), "*", fields.get("reason"), None)
                seen = self._seen[key] = self._seen.get(key, 0) + 1
                if seen > self.limits.repeat_threshold:
                    repeats = self._repeats.get(key)
                    if repeats is None:
                        repeats = self._repeats[key] = _Repeats(
                            dict(fields), now, now, time.monotonic()
                        )
                    repeats.count += 1
                    repeats.last = now
                    repeats.fields = dict(fields)
                    self._write_repeats(due_only=True)
                    return None
            if event in FLOOD_PRONE:
                self._write_repeats(due_only=True)
            else:
                # the run's own event: what was counted so far is written before it
                self._write_repeats(due_only=False)
                self._write_dropped()
            return self._write(event, fields, now)

    def flush(self) -> None:
        """Write every count still held (coalesced refusals, dropped events) now."""
        with self._lock:
            self._write_repeats(due_only=False)
            self._write_dropped()

    def _write_repeats(self, *, due_only: bool) -> None:
        if not self._repeats:
            return
        started = time.monotonic()
        for key, repeats in list(self._repeats.items()):
            if due_only and started - repeats.since < self.limits.repeat_window:
                continue
            del self._repeats[key]
            summary: dict[str, Any] = {
                k: repeats.fields[k]
                for k in ("workspace", "via", "name", "reason", "status", "method", "path")
                if k in repeats.fields
            }
            summary.update(count=repeats.count, first=repeats.first, last=repeats.last)
            summary["note"] = (
                f"{repeats.count} more refusals like the first "
                f"{self.limits.repeat_threshold}, counted instead of written one by one"
            )
            self._write("credential_denied_repeated", summary, repeats.last)

    def _write_dropped(self) -> None:
        dropped, self._dropped = self._dropped, None
        if dropped is None:
            return
        self._write(
            "audit_truncated",
            {
                "dropped": dropped.count,
                "kinds": dropped.kinds,
                "first": dropped.first,
                "last": dropped.last,
                "max_bytes": self.limits.max_bytes,
                "max_events": self.limits.max_events,
            },
            dropped.last,
            bounded=False,
        )

    def _write(
        self, event: str, fields: dict[str, Any], now: str, *, bounded: bool = True
    ) -> dict[str, Any] | None:
        # appended in place, not replaced through store/atomic.py: several processes
        # write the one file under the flock, and rewriting it per event would be
        # O(size); a crash can leave at most a torn last line, which a resume cuts
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except FileNotFoundError:
            # the run's directory, made once: a mkdir before every event cost the hot path
            # a third of a millisecond an iteration
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            info = os.fstat(fd)
            end = (info.st_dev, info.st_ino, info.st_size)
            size = info.st_size
            if self.last_head is not None and end == self._end:
                # the last line is this object's own, as it wrote it (a line rewritten
                # to the same length since is not chained onto: verify finds it)
                seq, prev = self.last_head.seq + 1, self.last_head.hash
            else:
                last = _read_last_line(fd, size)
                if last is None:
                    seq, prev = 1, GENESIS
                else:
                    seq = _seq_of(last, self.path) + 1
                    prev = line_hash(last)
            if bounded and event in FLOOD_PRONE and self._over_limit(size, seq):
                if self._truncation_noted:
                    self._drop(event, now)
                    return None
                # the first event left out is replaced by the note that says so
                self._truncation_noted = True
                self._drop(event, now)
                event, fields = (
                    "audit_truncated",
                    {
                        "from_seq": seq,
                        "max_bytes": self.limits.max_bytes,
                        "max_events": self.limits.max_events,
                        "note": "events the agent can repeat are no longer written; "
                        "how many were left out follows before the run's next event",
                    },
                )
            entry: dict[str, Any] = {
                "seq": seq,
                "time": now,
                "run": self.run_id,
                "event": event,
                **fields,
                "prev": prev,
            }
            body = json.dumps(entry, ensure_ascii=False, sort_keys=False).encode()
            if self._seal is not None:
                body = seal_line(body, self._seal)
            line = body + b"\n"
            _write_all(fd, line)
            self.last_head = ChainHead(seq=seq, hash=line_hash(body))
            self._end = (end[0], end[1], size + len(line))
            if event in DURABLE_EVENTS:
                os.fsync(fd)
        finally:
            # closing lets go of the lock too
            os.close(fd)
        return entry

    def _over_limit(self, size: int, seq: int) -> bool:
        return size >= self.limits.max_bytes or seq > self.limits.max_events

    def _drop(self, event: str, now: str) -> None:
        if self._dropped is None:
            self._dropped = _Dropped(now, now)
        self._dropped.count += 1
        self._dropped.last = now
        self._dropped.kinds[event] = self._dropped.kinds.get(event, 0) + 1

    def head(self) -> ChainHead | None:
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            last = _read_last_line(handle.fileno(), os.fstat(handle.fileno()).st_size)
        if last is None:
            return None
        return ChainHead(seq=int(json.loads(last)["seq"]), hash=line_hash(last))


@dataclass(frozen=True)
class Checkpoint:
    """A chain head kept outside the log (run.json, a commit trailer), and where it was kept."""

    head: ChainHead
    source: str


@dataclass(frozen=True)
class VerifyResult:
    """What verifying an audit log found, and the first line that cannot be trusted."""

    ok: bool
    lines: int
    head: ChainHead | None
    # 1-based line number of the first line that cannot be trusted
    bad_line: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AuditLine:
    """One line of the log as read back: its number, its bytes and, when it parses, its event."""

    number: int
    raw: bytes
    entry: dict[str, Any] | None
    # why the line could not be read as an event
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.raw.endswith(b"\n")

    @property
    def hash(self) -> str:
        return line_hash(self.raw)

    @property
    def seq(self) -> int | None:
        value = self.entry.get("seq") if self.entry else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_lines(path: Path) -> list[AuditLine]:
    """Every line of the log, parsed where possible; raises ``FileNotFoundError``."""
    result: list[AuditLine] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            result.append(_parse_line(number, raw))
    return result


def _parse_line(number: int, raw: bytes) -> AuditLine:
    text = raw.rstrip(b"\n")
    if not text.strip():
        return AuditLine(number, raw, None, "is empty")
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        # nesting deeper than json follows is no event outloop writes either
        return AuditLine(number, raw, None, "is not valid JSON")
    if not isinstance(entry, dict):
        return AuditLine(number, raw, None, "is not a JSON object")
    return AuditLine(number, raw, entry)


def verify(
    path: Path,
    *,
    expected_head: ChainHead | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    run_id: str | None = None,
    final: Checkpoint | None = None,
    check_mac: MacCheck | None = None,
    check_macs: BatchMacCheck | None = None,
) -> VerifyResult:
    """Check every link of the chain, then every head kept elsewhere.

    ``prev`` links catch edits, deletions, insertions and reordering inside
    the log; a head kept outside it (``run.json``, the commits' trailers)
    catches what links cannot: lines cut from the end, and a log rewritten
    with a freshly computed chain. A checkpoint is "the line with sequence S
    hashes to H", so a log that grew after a checkpoint was written still
    verifies, as it should; ``final`` is the head of a run that is over, after
    which nothing may follow (but the run's own ``run_stopped``, for a record
    saved just before that last event). ``check_macs`` checks the MACs of many
    lines at once, where ``check_mac`` checks one.
    """
    return verify_chain(
        path,
        expected_head=expected_head,
        checkpoints=checkpoints,
        run_id=run_id,
        final=final,
        check_mac=check_mac,
        check_macs=check_macs,
    )[0]


def verify_chain(
    path: Path,
    *,
    expected_head: ChainHead | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    run_id: str | None = None,
    final: Checkpoint | None = None,
    check_mac: MacCheck | None = None,
    check_macs: BatchMacCheck | None = None,
) -> tuple[VerifyResult, list[KeyEvent]]:
    """:func:`verify`, and the events run.json is checked against when the log verifies.

    An intact log is proved in one streaming pass (``store/chain_scan.py``);
    anything that pass cannot accept is judged line by line, which names the
    first bad line.
    """
    marks = list(checkpoints)
    if expected_head is not None:
        marks.append(Checkpoint(expected_head, "the run record"))
    if check_macs is None and check_mac is not None:
        check_macs = _batch(check_mac)
    if check_mac is None and check_macs is not None:
        check_mac = _single(check_macs)
    fast = _verify_fast(path, marks, run_id, final, check_macs)
    if fast is not None:
        return fast
    lines = read_lines(path)
    result = _verify_lines(lines, marks, run_id, final, check_mac)
    return result, (_key_events(lines) if result.ok else [])


def _batch(check: MacCheck) -> BatchMacCheck:
    def check_all(bodies: Sequence[bytes], macs: Sequence[bytes]) -> bool:
        return all(
            check(body, mac.decode("ascii", "replace"))
            for body, mac in zip(bodies, macs, strict=True)
        )

    return check_all


def _single(check: BatchMacCheck) -> MacCheck:
    def check_one(body: bytes, mac: str) -> bool:
        return check([body], [mac.encode()])

    return check_one


def _verify_fast(
    path: Path,
    marks: Sequence[Checkpoint],
    run_id: str | None,
    final: Checkpoint | None,
    check_macs: BatchMacCheck | None,
) -> tuple[VerifyResult, list[KeyEvent]] | None:
    """The verdict on a log that verifies, from one pass; None when it needs a closer look.

    Accepts exactly when :func:`_verify_lines` would: every link (the pass), every
    head kept elsewhere, nothing after a finished run's head but its ``run_stopped``.
    """
    from outloop_cli.store.chain_scan import scan_chain

    if final is not None and final.head.seq < 1:
        return None
    every = [*marks, *([final] if final is not None else [])]
    closing = (final.head.seq, final.head.seq + 1) if final is not None else ()
    scan = scan_chain(
        path,
        genesis=GENESIS,
        run_id=run_id,
        hashes_of={m.head.seq for m in every},
        events_of=closing,
        check_macs=check_macs,
    )
    if scan is None:
        return None
    for mark in every:
        seq = mark.head.seq
        if seq >= 1 and (seq > scan.lines or scan.hashes.get(seq) != mark.head.hash):
            return None
    if final is not None and scan.lines > final.head.seq:
        seq = final.head.seq
        stop_follows = scan.events.get(seq + 1) == "run_stopped"
        if scan.lines > seq + 1 or not stop_follows or scan.events.get(seq) == "run_stopped":
            return None
    head = ChainHead(seq=scan.lines, hash=scan.last_hash) if scan.last_hash else None
    return VerifyResult(True, scan.lines, head), scan.key_events


def _verify_lines(
    lines: Sequence[AuditLine],
    marks: list[Checkpoint],
    run_id: str | None,
    final: Checkpoint | None,
    check_mac: MacCheck | None,
) -> VerifyResult:
    failure = _check_links(lines, run_id)
    if failure is not None:
        bad_line, reason = failure
        return VerifyResult(False, len(lines), None, bad_line, reason)
    head = ChainHead(seq=len(lines), hash=lines[-1].hash) if lines else None
    if final is not None:
        marks.append(final)
    failure = _check_marks(lines, marks) or _check_closed(lines, final)
    # last: the heads kept elsewhere name what went wrong more exactly when they see it;
    # the MAC catches what they cannot, a log rewritten with everything recomputed
    if failure is None and check_mac is not None:
        failure = _check_macs(lines, check_mac)
    if failure is not None:
        bad_line, reason = failure
        return VerifyResult(False, len(lines), head, bad_line, reason)
    return VerifyResult(True, len(lines), head)


def _key_events(lines: Sequence[AuditLine]) -> list[KeyEvent]:
    from outloop_cli.store.chain_scan import KEY_EVENTS, KeyEvent

    found = []
    for line in lines:
        entry = line.entry or {}
        event = entry.get("event")
        if isinstance(event, str) and event in KEY_EVENTS:
            found.append(
                KeyEvent(
                    seq=line.number,
                    time=str(entry.get("time")),
                    run=str(entry.get("run")),
                    event=event,
                    prev=str(entry.get("prev")),
                    iteration=entry.get("iteration"),
                    met=entry.get("met"),
                    commit=entry.get("commit"),
                    reason=entry.get("reason"),
                )
            )
    return found


def _check_macs(lines: Sequence[AuditLine], check: MacCheck) -> tuple[int, str] | None:
    """The first line whose MAC is missing or wrong under the run's key."""
    for line in lines:
        found = unsealed(line.raw.rstrip(b"\n"))
        if found is None:
            return line.number, (
                f"line {line.number} carries no MAC of the run's key: it was written "
                "outside outloop"
            )
        body, mac = found
        if not check(body, mac):
            return line.number, (
                f"line {line.number}'s MAC does not match the run's key: the log was "
                "rewritten outside outloop (a recomputed chain included)"
            )
    return None


def sealed(path: Path) -> bool:
    """Whether the log's first line carries a MAC (logs of older outloops do not)."""
    try:
        with path.open("rb") as handle:
            first = handle.readline().rstrip(b"\n")
    except OSError:
        return False
    return unsealed(first) is not None


def _check_links(lines: Sequence[AuditLine], run_id: str | None) -> tuple[int, str] | None:
    """The first broken link as (line number, why), or None when the chain holds."""
    seqs = [line.seq for line in lines]
    first_seen: dict[bytes, int] = {}
    prev = GENESIS
    for index, line in enumerate(lines):
        n = line.number
        expected = index + 1
        if not line.complete:
            return n, f"line {n} is cut off (no newline at its end): the log was truncated mid-line"
        if line.problem is not None or line.entry is None:
            return n, f"line {n} {line.problem}"
        entry = line.entry
        earlier = first_seen.get(line.raw)
        if earlier is not None:
            return n, f"line {n} is an exact copy of line {earlier}: a line was duplicated"
        first_seen[line.raw] = n
        seq = line.seq
        if seq is None:
            return n, f"line {n} has no valid sequence number"
        if seq != expected and entry.get("prev") == prev:
            # it links to the line before it, so nothing is missing in between
            return n, (
                f"line {n} has sequence {seq} where {expected} belongs, yet it links to "
                f"line {n - 1}: its sequence number was edited"
            )
        if seq != expected:
            inserted = _inserted_line(lines, index)
            if inserted is not None:
                follows = (
                    f"continues from line {inserted - 1}" if inserted > 1 else "starts the chain"
                )
                return inserted, (
                    f"line {inserted} was inserted: line {n} {follows}, as line {inserted} does"
                )
            return n, _sequence_problem(n, seq, expected, seqs)
        for key in ("time", "event", "run"):
            if not isinstance(entry.get(key), str):
                return n, f"line {n} has no `{key}`"
        if run_id is not None and entry["run"] != run_id:
            return n, f"line {n} belongs to run {entry['run']}, not {run_id}: it was copied in"
        if entry.get("prev") != prev:
            if n == 1:
                return 1, (
                    "line 1 does not start the chain (its `prev` is not the genesis value): "
                    "lines were removed from the start, or its `prev` was edited"
                )
            return n - 1, (
                f"line {n - 1} does not hash to the `prev` recorded in line {n}: "
                f"line {n - 1} was edited (or line {n}'s `prev` was)"
            )
        prev = line.hash
    return None


def _inserted_line(lines: Sequence[AuditLine], index: int) -> int | None:
    """When line ``index`` links to an earlier line that another line already follows,
    the line in between was inserted: return its number."""
    entry = lines[index].entry
    prev = entry.get("prev") if entry else None
    if prev == GENESIS and index > 0:
        return lines[0].number
    for j in range(index - 2, -1, -1):
        if lines[j].hash == prev:
            return lines[j + 1].number
    return None


def _sequence_problem(n: int, seq: int, expected: int, seqs: Sequence[int | None]) -> str:
    if seq < expected:
        return (
            f"line {n} has sequence {seq} where {expected} belongs: "
            "lines were reordered, or a line was inserted"
        )
    if expected in seqs[n:]:
        later = seqs.index(expected, n) + 1
        return (
            f"line {n} has sequence {seq} where {expected} belongs, and sequence {expected} "
            f"is on line {later}: lines were reordered"
        )
    missing = f"{expected}" if seq == expected + 1 else f"{expected}–{seq - 1}"
    return f"line {n} has sequence {seq} where {expected} belongs: sequence {missing} was removed"


def _check_marks(lines: Sequence[AuditLine], marks: Sequence[Checkpoint]) -> tuple[int, str] | None:
    """Check heads kept elsewhere against an intact chain (line i holds sequence i)."""
    last_good: Checkpoint | None = None
    for mark in sorted(marks, key=lambda m: m.head.seq):
        seq = mark.head.seq
        if seq < 1:
            continue
        if seq > len(lines):
            ends = f"sequence {len(lines)}" if lines else "nothing (the log is empty)"
            return len(lines) + 1, (
                f"the log ends at {ends}, but {mark.source} records sequence {seq}: "
                "lines were removed from the end"
            )
        line = lines[seq - 1]
        if line.hash != mark.head.hash:
            since = (
                f"after sequence {last_good.head.seq} (which matches {last_good.source})"
                if last_good is not None
                else "at or before it"
            )
            return line.number, (
                f"line {line.number} (sequence {seq}) does not match the hash {mark.source} "
                f"recorded for it: the log was rewritten {since}, with a recomputed chain "
                f"(or {mark.source} was edited)"
            )
        last_good = mark
    return None


def _check_closed(lines: Sequence[AuditLine], final: Checkpoint | None) -> tuple[int, str] | None:
    """Nothing may be appended to the log of a run that is over."""
    # a head below 1 (an edited run.json) closes the log before its first line
    end = max(final.head.seq, 0) if final is not None else 0
    if final is None or len(lines) <= end:
        return None
    extra = lines[end:]

    def event(line: AuditLine) -> object:
        return line.entry.get("event") if line.entry else None

    at_head = event(lines[end - 1]) if end >= 1 else None
    allowed = 1 if event(extra[0]) == "run_stopped" and at_head != "run_stopped" else 0
    if len(extra) <= allowed:
        return None
    bad = extra[allowed]
    return bad.number, (
        f"line {bad.number} was appended after the run was over "
        f"({final.source} ends it at sequence {final.head.seq})"
    )


@dataclass(frozen=True)
class TornTail:
    """The last audit line a crash cut off and the caller removed: its length and hash."""

    length: int
    sha256: str


def cut_torn_audit_tail(path: Path) -> TornTail | None:
    """Remove a last audit line that a crash cut off before its newline.

    Such a line was never complete, so no head kept outside the log (run.json,
    a commit trailer) can point at it; cutting it restores a chain that
    verifies, and the caller records what was cut as an event of its own.
    """
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return None
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return None
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return None
        start = max(0, size - 1024 * 1024)
        handle.seek(start)
        data = handle.read()
        cut = data.rfind(b"\n") + 1
        fragment = data[cut:]
        handle.truncate(start + cut)
        handle.flush()
        os.fsync(handle.fileno())
    return TornTail(len(fragment), hashlib.sha256(fragment).hexdigest())


def trusted_events(
    path: Path, run_id: str, check_mac: MacCheck | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The log's events, and why they cannot be trusted (None when they can).

    For decisions (a resume): the chain must hold and, with the run's key,
    every line must carry its MAC. A last line a crash cut off is left out, as
    the resume that follows cuts it.
    """
    lines = read_lines(path)
    if lines and not lines[-1].complete:
        lines = lines[:-1]
    failure = _check_links(lines, run_id) or (
        _check_macs(lines, check_mac) if check_mac is not None else None
    )
    if failure is not None:
        return [], failure[1]
    return [line.entry for line in lines if line.entry is not None], None
