"""The quick "is any form of a secret in here?" test that masking runs on every byte.

Masking ignores ASCII letter case, so the plain test lower-cases the data and
looks for each (lower-case) probe with a substring search: one copy and one
pass per probe, all in C, yet the cost that bounds the access proxy's
throughput (about 1 ms per MB for one key's five probes). With Hyperscan
(Intel's SIMD multi-literal matcher, the ``hyperscan`` package) the same
question is one caseless pass over the data for all probes at once, without
the lower-cased copy, several times faster.

Both answer exactly the same question; the regex that does the masking is
the same either way, so Hyperscan only decides how fast a clean chunk is let
through. Where the package is missing (other platforms) the plain test is used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol


class Prefilter(Protocol):
    def may_contain(self, data: bytes) -> bool:
        """False only when no probe occurs in ``data`` in any ASCII letter case."""
        ...


class SubstringPrefilter:
    """Lower-cases the data and searches it for each lower-case probe."""

    def __init__(self, probes: Sequence[bytes]) -> None:
        self._probes = tuple(p.lower() for p in probes)

    def may_contain(self, data: bytes) -> bool:
        low = data.lower()
        return any(probe in low for probe in self._probes)


class HyperscanPrefilter:
    """One caseless Hyperscan pass for every probe, stopped at the first match."""

    def __init__(self, probes: Sequence[bytes], hyperscan: Any) -> None:
        self._hs = hyperscan
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        # every byte as \xHH: a literal whatever the byte (no regex syntax, no NUL
        # ending the C string early)
        expressions = [b"".join(b"\\x%02x" % byte for byte in p) for p in probes]
        flags = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH
        self._db.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[flags] * len(expressions),
        )
        # the database's scratch space serves one scan at a time
        self._lock = threading.Lock()

    def may_contain(self, data: bytes) -> bool:
        if not data:
            return False
        found: list[int] = []

        def on_match(pattern: int, start: int, end: int, flags: int, context: object) -> bool:
            found.append(pattern)
            return True  # stop: one is enough

        with self._lock:
            try:
                self._db.scan(data, match_event_handler=on_match)
            except self._hs.ScanTerminated:
                return True
        return bool(found)


# Hyperscan compiles long literals slowly or not at all (a PEM key's forms run to
# kilobytes); those few are searched for the plain way
HYPERSCAN_MAX_LITERAL = 512


class EitherPrefilter:
    """Short probes through one prefilter, long ones through another."""

    def __init__(self, short: Prefilter, long: Prefilter) -> None:
        self._short = short
        self._long = long

    def may_contain(self, data: bytes) -> bool:
        return self._short.may_contain(data) or self._long.may_contain(data)


def _hyperscan() -> Any:
    try:
        import hyperscan  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, OSError):
        # not installed, or its library cannot load here
        return None
    return hyperscan


def build(probes: Sequence[bytes]) -> Prefilter:
    """The fastest prefilter available here for ``probes`` (non-empty byte strings)."""
    hyperscan = _hyperscan()
    short = [p for p in probes if len(p) <= HYPERSCAN_MAX_LITERAL]
    if hyperscan is None or not short:
        return SubstringPrefilter(probes)
    try:
        fast = HyperscanPrefilter(short, hyperscan)
    except hyperscan.error:
        # a CPU without the instructions the library needs, or a pattern it refuses
        return SubstringPrefilter(probes)
    long = [p for p in probes if len(p) > HYPERSCAN_MAX_LITERAL]
    return EitherPrefilter(fast, SubstringPrefilter(long)) if long else fast


__all__ = ["EitherPrefilter", "HyperscanPrefilter", "Prefilter", "SubstringPrefilter", "build"]
