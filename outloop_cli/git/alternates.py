"""``objects/info/alternates``: one object store per line, C-quoted when a path needs it.

Git reads the file line by line, so a store whose path holds a line break (or
starts with ``#`` or a double quote) would be cut or skipped. Since git 2.11 a
line that starts with ``"`` is unquoted C-style (``unquote_c_style``), which
is how such a path is written here and how every line is read back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_ESCAPES = {ord('"'): b'\\"', ord("\\"): b"\\\\", ord("\n"): b"\\n", ord("\t"): b"\\t"}
_UNESCAPES = {
    ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("v"): 11,
    ord("\\"): 92, ord('"'): 34,
}  # fmt: skip


def _needs_quotes(raw: bytes) -> bool:
    return raw.startswith((b"#", b'"')) or any(byte < 0x20 or byte in b'"\\' for byte in raw)


def _quote(raw: bytes) -> bytes:
    out = bytearray(b'"')
    for byte in raw:
        if byte in _ESCAPES:
            out += _ESCAPES[byte]
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def _unquote(line: bytes) -> bytes | None:
    """The path of a C-quoted line, or None when it is not well formed."""
    out = bytearray()
    i = 1
    while i < len(line):
        byte = line[i]
        if byte == ord('"'):
            return bytes(out)
        if byte == ord("\\"):
            i += 1
            if i >= len(line):
                return None
            code = line[i]
            if code in _UNESCAPES:
                out.append(_UNESCAPES[code])
            elif ord("0") <= code <= ord("3") and i + 2 < len(line):
                digits = line[i : i + 3]
                if not all(ord("0") <= d <= ord("7") for d in digits):
                    return None
                out.append(int(digits, 8))
                i += 2
            else:
                return None
        else:
            out.append(byte)
        i += 1
    return None


def format_alternates(stores: Iterable[Path]) -> bytes:
    """The file's content naming ``stores`` (absolute paths), one per line."""
    lines = []
    for store in stores:
        raw = os.fsencode(str(store))
        lines.append(_quote(raw) if _needs_quotes(raw) else raw)
    return b"".join(line + b"\n" for line in lines)


def parse_alternates(content: bytes, objects_dir: Path) -> list[Path]:
    """The stores a file names, relative ones resolved against the ``objects`` dir it sits in."""
    stores: list[Path] = []
    for line in content.split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        # broken quoting is read as a plain path, as git's parse_alt_odb_entry reads it
        unquoted = _unquote(line) if line.startswith(b'"') else None
        raw = line if unquoted is None else unquoted
        if raw:
            stores.append((objects_dir / os.fsdecode(raw)).resolve())
    return stores
