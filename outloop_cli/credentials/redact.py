"""Removing secret values, in the encodings they travel in, from bytes that leave the proxy.

An upstream can hand a key back in many shapes: echoed as is, inside a JSON
string, URL-encoded in a redirect, base64-encoded inside an echoed
``Authorization: Basic`` header, or hex-dumped in a debug page. Each shape of
each secret becomes one byte pattern. Base64 depends on where the value starts
within the encoded input, so each of the three alignments contributes the part
of its encoding that depends on the secret's bytes alone.

``StreamRedactor`` works on a stream cut into arbitrary chunks: it holds back
only the shortest tail that could still grow into a pattern, so a secret split
across two chunks is caught, while a server-sent event whose last bytes cannot
start a secret goes out at once.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable

REPLACEMENT = b"***"
# shorter patterns would match ordinary text; a real key is far longer
_MIN_PATTERN = 6


def encodings(value: str) -> set[bytes]:
    """Every byte pattern under which ``value`` may appear in an HTTP message."""
    raw = value.encode("utf-8")
    out: set[bytes] = {raw}
    out.add(raw.hex().encode())
    out.add(raw.hex().upper().encode())
    for quoted in (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value, safe="")):
        out.add(quoted.encode())
        # percent escapes may come back in lower case
        out.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted).encode())
    for ascii_only in (True, False):
        body = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        out.add(body.encode())
        # some encoders also escape '/'
        out.add(body.replace("/", "\\/").encode())
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        # the whole value encoded on its own, padding included, then any alignment inside more
        out.add(encode(raw))
        for offset in range(3):
            out.add(_base64_core(encode, raw, offset))
    return {pattern for pattern in out if len(pattern) >= _MIN_PATTERN}


def _base64_core(encode: Callable[[bytes], bytes], raw: bytes, offset: int) -> bytes:
    """The base64 characters fixed by ``raw`` alone when it starts ``offset`` bytes into a group."""
    full_groups = (offset + len(raw)) // 3
    encoded: bytes = encode(b"\0" * offset + raw)[: full_groups * 4]
    # with a prefix, the first group mixes its bytes with ours
    return encoded[4:] if offset else encoded


class Redactor:
    """Replaces every encoding of a set of secrets in whole values (headers, error text)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        patterns: set[bytes] = set()
        for value in secrets:
            if value:
                patterns |= encodings(value)
        # longest first, so a pattern that contains another one wins
        ordered = sorted(patterns, key=lambda p: (-len(p), p))
        self._patterns = tuple(ordered)
        self._regex = re.compile(b"|".join(re.escape(p) for p in ordered)) if ordered else None
        self.longest = max((len(p) for p in ordered), default=0)
        # every proper prefix of every pattern: what a chunk may end with mid-secret
        self._prefixes = {p[:k] for p in ordered for k in range(1, len(p))}

    @property
    def empty(self) -> bool:
        return self._regex is None

    def redact_bytes(self, data: bytes) -> bytes:
        # substring search is several times faster than the alternation regex, and
        # almost every chunk holds no secret at all
        if self._regex is None or not any(p in data for p in self._patterns):
            return data
        return self._regex.sub(REPLACEMENT, data)

    def redact_text(self, data: str) -> str:
        if self._regex is None:
            return data
        return self.redact_bytes(data.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )

    def pending_tail(self, data: bytes) -> int:
        """Length of the longest suffix of ``data`` that could be the start of a pattern."""
        for size in range(min(len(data), self.longest - 1), 0, -1):
            if data[-size:] in self._prefixes:
                return size
        return 0

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a byte stream chunk by chunk; call ``feed`` per chunk, then ``finish``."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._redactor.empty:
            return chunk
        data = self._redactor.redact_bytes(self._held + chunk)
        # a match ends the text it replaced, so only the tail after it can be pending
        keep = self._redactor.pending_tail(data)
        self._held = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep]

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        return self._redactor.redact_bytes(held)
