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
from pathlib import Path
from typing import Any

import msgspec

# a sealed line ends with `, "mac": "<64 hex>"}`; the MAC is over the line
# without that tail, closed with `}` (store/audit.py's seal_line)
_MAC_OPEN = b', "mac": "'
_MAC_TAIL = len(_MAC_OPEN) + 64 + 2
# no line this short can hold a number json refuses or nesting json cannot follow
_JSON_SAFE_LENGTH = 640
_CHUNK = 4 * 1024 * 1024

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


# the events run.json's claims are checked against (start, stop, goal, commit)
KEY_EVENTS = frozenset({"run_started", "run_resumed", "run_stopped", "goal_evaluated", "committed"})


@dataclass
class Scan:
    """What the pass learned of a log whose every line links to the one before."""

    lines: int = 0
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
) -> Scan | None:
    """The log's facts when every line is complete, parses, links and (with a
    MAC check) carries its MAC; None when the line-by-line checker must judge.

    Raises ``FileNotFoundError`` like the line-by-line checker.
    """
    scan = Scan()
    prev = genesis
    with path.open("rb", buffering=0) as handle:
        rest = b""
        while True:
            block = handle.read(_CHUNK)
            if not block:
                break
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut == 0:
                continue
            first = scan.lines + 1
            checked = _check_chunk(data[:cut], first, prev, run_id, check_macs)
            if checked is None:
                return None
            events, hashes = checked
            scan.lines += len(events)
            prev = hashes[-1]
            _collect(scan, first, events, hashes, hashes_of, events_of)
        if rest:
            # a last line without its newline: cut off, which the checker names
            return None
    scan.last_hash = prev if scan.lines else None
    return scan


def _check_chunk(
    chunk: bytes,
    first: int,
    prev: str,
    run_id: str | None,
    check_macs: BatchMacCheck | None,
) -> tuple[list[KeyEvent], list[str]] | None:
    """The chunk's events and line hashes when all of its lines hold; ``first`` is
    the sequence its first line must have, ``prev`` the hash it must link to."""
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
    if [e.seq for e in events] != list(range(first, first + len(lines))):
        return None
    if run_id is not None and [e.run for e in events].count(run_id) != len(events):
        return None
    sha256 = hashlib.sha256
    hashes = [sha256(line).hexdigest() for line in lines]
    if [e.prev for e in events] != [prev, *hashes[:-1]]:
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
