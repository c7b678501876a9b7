"""Is a key recoverable from what an agent received? Looked for as an attacker would look.

Not just "is the key's text in the bytes": every form masking knows, in any
letter case, then the body undone the ways an agent could undo it (chunked
framing removed, gzip decompressed as many times as it takes, reversed), so a
test fails for a key that came back compressed or under an encoding of the
upstream's own, not only for one that came back in the clear.
"""

from __future__ import annotations

import gzip
import zlib

from outloop_cli.credentials.masking import secret_forms


def _dechunk(body: bytes) -> bytes:
    out = b""
    rest = body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return body
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return body
        if size == 0:
            return out
        out += rest[:size]
        rest = rest[size + 2 :]
    return out


def body_of(reply: bytes) -> bytes:
    """The body of a raw HTTP response, chunked framing removed."""
    head, _, body = reply.partition(b"\r\n\r\n")
    return _dechunk(body) if b"transfer-encoding: chunked" in head.lower() else body


def _undone(data: bytes) -> list[bytes]:
    """``data`` and every way an agent could read more out of it."""
    views = [data]
    head, sep, body = data.partition(b"\r\n\r\n")
    if sep:
        views.append(body)
        if b"chunked" in head.lower():
            body = _dechunk(body)
            views.append(body)
    for view in list(views):
        layer = view
        for _ in range(4):
            try:
                layer = gzip.decompress(layer)
            except (OSError, EOFError, zlib.error):
                break
            views.append(layer)
    views += [view[::-1] for view in list(views)]
    return views


def recovered(key: str, data: bytes) -> list[str]:
    """The forms under which ``key`` can be read out of ``data``; empty when it cannot."""
    found: list[str] = []
    forms = {label: form.lower() for label, form in secret_forms(key).items()}
    for view in _undone(data):
        lowered = view.lower()
        for label, form in forms.items():
            if form in lowered and label not in found:
                found.append(label)
    return found


__all__ = ["body_of", "recovered"]
