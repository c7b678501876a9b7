"""One streaming pass over an audit log that proves an intact chain at hashing speed.

``store/audit.py``'s line-by-line checker parses every line with ``json``,
builds a dict per event and keeps the whole log in memory: 40 s and 2.4 GB
for a million events. This pass reads the log in large chunks and checks
every line in bulk: the parse with a typed msgspec decoder that builds only
the few fields the chain needs, the hashes and MACs from prepared SHA-256
states. It answers one question only: does the log verify? When it does,
the caller's answer is this pass's; on *any* doubt (a check that fails, a
line this pass cannot judge exactly as ``json`` would) it says so and the
caller runs the line-by-line checker, which names the first bad line with
the messages it always had. So the pass must never accept a log that the
line-by-line checker rejects; ``tests/store/test_audit_fast.py`` holds it to
that on every kind of damage.

Where msgspec and ``json.loads`` could judge a line differently, the pass
does not rely on msgspec:

- msgspec does not check the UTF-8 of strings it skips (fields the chain
  does not need): a chunk that is not pure ASCII is decoded as ``json.loads``
  would (UTF-8, surrogates passed) before it is trusted;
- ``json`` rejects integers longer than ``sys.get_int_max_str_digits()``
  (never below 640) and raises ``RecursionError`` on deep nesting, which
  msgspec may accept: a line longer than 640 bytes, which alone can hold
  either, is parsed by ``json.loads`` too;
- values ``json`` accepts and msgspec refuses (``NaN``, lone surrogates,
  out-of-range floats) only send the log to the line-by-line checker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec

from outloop_cli.process.forked import run_forked, usable_cores

# a sealed line ends with `, "mac": "<64 hex>"}`; the MAC is over the line
# without that tail, closed with `}` (store/audit.py's seal_line)
_MAC_OPEN = b', "mac": "'
_MAC_TAIL = len(_MAC_OPEN) + 64 + 2
# no line this short can hold a number json refuses or nesting json cannot follow
_JSON_SAFE_LENGTH = 640
_CHUNK = 4 * 1024 * 1024
# a log is split over cores only when each part is worth a fork
_MIN_PART = 16 * 1024 * 1024
_MAX_PARTS = 8

BatchMacCheck = Callable[[Sequence[bytes], Sequence[bytes]], bool]
"""(bodies, their stated MACs as hex bytes) -> whether every MAC is right."""


class KeyEvent(msgspec.Struct, gc=False, frozen=True):
    """The fields of an event that the chain and the run-record checks read.

    Untracked by the garbage collector (it holds no containers it could be in
    a cycle with), so a million of them cost no collection passes.
    """

    seq: int
    time: str
    run: str
    event: str
    prev: str
    iteration: Any = None
    met: Any = None
    commit: Any = None
    reason: Any = None

    @property
    def number(self) -> int:
        """The event's line: in a log whose links hold, line N holds sequence N."""
        return self.seq


_DECODE = msgspec.json.Decoder(KeyEvent).decode
# a forked part hands its key events back as msgpack: a pickle of a long run's
# few hundred thousand structs took longer than the part's own checks left to wait
_PACK = msgspec.msgpack.Encoder().encode
_UNPACK = msgspec.msgpack.Decoder(list[KeyEvent]).decode


# the events run.json's claims are checked against (start, stop, goal, commit)
KEY_EVENTS = frozenset({"run_started", "run_resumed", "run_stopped", "goal_evaluated", "committed"})


@dataclass
class Scan:
    """What the pass learned of a log (or a part of one) whose every line links to the one before."""

    lines: int = 0
    # the sequence and link the first line claims: the part before it must end there
    first_seq: int = 1
    first_prev: str = ""
    last_hash: str | None = None
    # hashes and event names of the lines the caller asked for, by sequence number
    hashes: dict[int, str] = field(default_factory=dict)
    events: dict[int, str] = field(default_factory=dict)
    key_events: list[KeyEvent] = field(default_factory=list)


def scan_chain(
    path: Path,
    *,
    genesis: str,
    run_id: str | None,
    hashes_of: Collection[int] = (),
    events_of: Collection[int] = (),
    check_macs: BatchMacCheck | None = None,
    workers: int | None = None,
) -> Scan | None:
    """The log's facts when every line is complete, parses, links and (with a
    MAC check) carries its MAC; None when the line-by-line checker must judge.

    A large log is cut at line boundaries into one part per usable core, each
    checked in a forked copy of this process (``process/forked.py``); the parts
    are then joined, each starting with the sequence and the link the part
    before it ends with. Raises ``FileNotFoundError`` like the line-by-line checker.
    """
    size = path.stat().st_size
    count = max(1, min(workers or usable_cores(), _MAX_PARTS, size // _MIN_PART))
    bounds = _boundaries(path, size, count)
    jobs: list[Callable[[], Scan | None]] = [
        partial(_scan_part, path, start, end, run_id, hashes_of, events_of, check_macs)
        for start, end in pairwise(bounds)
    ]
    if len(jobs) == 1:
        return _join([jobs[0]()], genesis)
    # the first part is checked in this process, the others in forked children
    parts = run_forked([partial(_part, job, pack=k > 0) for k, job in enumerate(jobs)])
    return _join([_unpacked(part) for part in parts], genesis)


@dataclass
class _Part:
    """A part's scan; from a forked child with its key events packed apart."""

    scan: Scan
    packed_key_events: bytes | None = None


def _part(job: Callable[[], Scan | None], *, pack: bool) -> _Part | None:
    scan = job()
    if scan is None:
        return None
    if not pack:
        return _Part(scan)
    packed = _PACK(scan.key_events)
    scan.key_events = []
    return _Part(scan, packed)


def _unpacked(part: _Part | None) -> Scan | None:
    if part is None:
        return None
    if part.packed_key_events is not None:
        part.scan.key_events = _UNPACK(part.packed_key_events)
    return part.scan


def _boundaries(path: Path, size: int, count: int) -> list[int]:
    """Offsets that cut the file into ``count`` parts of whole lines (fewer for few lines)."""
    bounds = [0]
    with path.open("rb") as handle:
        for k in range(1, count):
            pos = max(size * k // count, bounds[-1])
            handle.seek(pos)
            while True:
                block = handle.read(65536)
                if not block:
                    pos = size
                    break
                found = block.find(b"\n")
                if found >= 0:
                    pos += found + 1
                    break
                pos += len(block)
            if bounds[-1] < pos < size:
                bounds.append(pos)
    bounds.append(size)
    return bounds


def _join(parts: Sequence[Scan | None], genesis: str) -> Scan | None:
    whole = Scan(first_prev=genesis)
    prev = genesis
    for part in parts:
        if part is None:
            return None
        if part.lines == 0:
            continue
        if part.first_seq != whole.lines + 1 or part.first_prev != prev:
            return None
        whole.lines += part.lines
        prev = part.last_hash or prev
        whole.hashes.update(part.hashes)
        whole.events.update(part.events)
        whole.key_events.extend(part.key_events)
    whole.last_hash = prev if whole.lines else None
    return whole


def _scan_part(
    path: Path,
    start: int,
    end: int,
    run_id: str | None,
    hashes_of: Collection[int],
    events_of: Collection[int],
    check_macs: BatchMacCheck | None,
) -> Scan | None:
    """The lines between byte offsets ``start`` and ``end``, which start and end a line."""
    scan = Scan()
    prev: str | None = None
    with path.open("rb", buffering=0) as handle:
        handle.seek(start)
        remaining = end - start
        rest = b""
        while remaining > 0:
            block = handle.read(min(_CHUNK, remaining))
            if not block:
                break
            remaining -= len(block)
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut == 0:
                continue
            first = scan.first_seq + scan.lines if prev is not None else None
            checked = _check_chunk(data[:cut], first, prev, run_id, check_macs)
            if checked is None:
                return None
            events, hashes = checked
            if prev is None:
                scan.first_seq, scan.first_prev = events[0].seq, events[0].prev
            _collect(scan, scan.first_seq + scan.lines, events, hashes, hashes_of, events_of)
            scan.lines += len(events)
            prev = hashes[-1]
        if rest or remaining > 0:
            # a last line without its newline (cut off), or a log that shrank: the checker names it
            return None
    scan.last_hash = prev
    return scan


def _check_chunk(
    chunk: bytes,
    first: int | None,
    prev: str | None,
    run_id: str | None,
    check_macs: BatchMacCheck | None,
) -> tuple[list[KeyEvent], list[str]] | None:
    """The chunk's events and line hashes when all of its lines hold; ``first`` is
    the sequence its first line must have, ``prev`` the hash it must link to (None:
    whatever the first line claims, which the part before it is held to)."""
    if not chunk.isascii():
        try:
            chunk.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return None
    lines = chunk.split(b"\n")
    lines.pop()  # the chunk ends with a newline: nothing follows the last one
    try:
        events = list(map(_DECODE, lines))
    except (msgspec.DecodeError, RecursionError):
        return None
    if max(map(len, lines)) > _JSON_SAFE_LENGTH and not _json_accepts(lines):
        return None
    if first is None:
        first = events[0].seq
    if [e.seq for e in events] != list(range(first, first + len(lines))):
        return None
    if run_id is not None and [e.run for e in events].count(run_id) != len(events):
        return None
    sha256 = hashlib.sha256
    hashes = [sha256(line).hexdigest() for line in lines]
    if [e.prev for e in events] != [events[0].prev if prev is None else prev, *hashes[:-1]]:
        return None
    if check_macs is not None and not _macs_hold(lines, check_macs):
        return None
    return events, hashes


def _json_accepts(lines: Sequence[bytes]) -> bool:
    for line in lines:
        if len(line) <= _JSON_SAFE_LENGTH:
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            return False
        if not isinstance(entry, dict):
            return False
    return True


def _macs_hold(lines: Sequence[bytes], check_macs: BatchMacCheck) -> bool:
    tail = -_MAC_TAIL
    opened = tail + len(_MAC_OPEN)
    frame = _MAC_OPEN + b'"}'
    if [line[tail:opened] + line[-2:] for line in lines].count(frame) != len(lines):
        return False
    bodies = [line[:tail] + b"}" for line in lines]
    macs = [line[-66:-2] for line in lines]
    return check_macs(bodies, macs)


def _collect(
    scan: Scan,
    first: int,
    events: Sequence[KeyEvent],
    hashes: Sequence[str],
    hashes_of: Collection[int],
    events_of: Collection[int],
) -> None:
    last = first + len(events) - 1
    for seq in hashes_of:
        if first <= seq <= last:
            scan.hashes[seq] = hashes[seq - first]
    for seq in events_of:
        if first <= seq <= last:
            scan.events[seq] = events[seq - first].event
    scan.key_events.extend([e for e in events if e.event in KEY_EVENTS])
