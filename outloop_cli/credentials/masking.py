"""Masking: every secret, and the usual encodings of it, becomes ``***`` in what outloop writes.

A key leaks as easily in disguise as in the clear: an agent (or a tool's
debug output) may print it base64-encoded in a Basic auth header, hex-dumped,
percent-encoded in a URL, or escaped inside JSON. So for each value the
masker derives these forms and matches all of them:

* the value itself;
* base64 and base64url, with and without padding, and the part of the
  encoding that does not depend on alignment, so the value is found inside a
  longer base64 blob (``user:KEY`` in a Basic header) at any of the three
  byte offsets;
* hex, lower and upper case;
* percent-encoding (``quote``, ``quote_plus``, with lower-case escapes too);
* JSON string escaping (ASCII-only and not, with ``\\/`` for slashes).

All of them are matched in any ASCII letter case: a key handed back
upper-cased (an error page that shouts, a header name a server folded) is
still the key to whoever folds it back.

Forms shorter than :data:`MIN_FORM` characters are skipped: a two-letter
fragment of base64 would mask noise everywhere and protect nothing.

:class:`StreamMasker` masks a byte stream that arrives in chunks, holding back
just enough bytes that a secret split across two chunks is still caught.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.credentials import prefilter

MASK = "***"
MIN_FORM = 4


@dataclass(frozen=True)
class SecretHit:
    """Where a secret showed up: its name (when known) and in which form; never its value."""

    name: str
    form: str


def _b64_forms(raw: bytes) -> dict[str, bytes]:
    forms: dict[str, bytes] = {}
    for label, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        full = encode(raw)
        forms[label] = full
        forms[f"{label} (unpadded)"] = full.rstrip(b"=")
        for offset in (0, 1, 2):
            # Encode behind `offset` filler bytes: the characters that depend only on
            # the value are the ones fully inside its bits, whatever surrounds it.
            encoded = encode(b"\0" * offset + raw)
            start = -(-offset * 8 // 6)
            end = (offset + len(raw)) * 8 // 6
            core = encoded[start:end]
            forms[f"{label} (inside a longer text, offset {offset})"] = core
            # the same at the end of the encoded text: the last characters mix the
            # value's last bits only with the padding, so they belong to it too
            forms[f"{label} (ending a longer text, offset {offset})"] = encoded[start:]
    return forms


def _text_forms(value: str) -> dict[str, str]:
    forms: dict[str, str] = {
        "plain": value,
        "url-encoded": urllib.parse.quote(value, safe=""),
        "url-encoded (path)": urllib.parse.quote(value),
        "url-encoded (form)": urllib.parse.quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "json (non-ascii kept)": json.dumps(value, ensure_ascii=False)[1:-1],
    }
    forms["json (escaped slashes)"] = forms["json"].replace("/", "\\/")
    # Go's encoding/json (and others) escape what HTML gives a meaning to
    forms["json (html-safe)"] = (
        forms["json"].replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    for label in ("url-encoded", "url-encoded (path)", "url-encoded (form)"):
        # percent escapes may come back in lower case
        forms[f"{label} (lower-case)"] = re.sub(
            r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), forms[label]
        )
    # a URL built from an already encoded one (a redirect's `next=` parameter)
    forms["url-encoded twice"] = urllib.parse.quote(forms["url-encoded"], safe="")
    return forms


def secret_forms(value: str) -> dict[str, bytes]:
    """Each form of ``value`` that masking looks for, by label (plain first)."""
    raw = value.encode()
    forms: dict[str, bytes] = {label: text.encode() for label, text in _text_forms(value).items()}
    forms["hex"] = binascii.hexlify(raw)
    forms["hex (upper-case)"] = binascii.hexlify(raw).upper()
    forms.update(_b64_forms(raw))
    out: dict[str, bytes] = {}
    seen: set[bytes] = set()
    for label, form in forms.items():
        # the plain value is always kept, however short; derived fragments only when telling
        if form in seen or (label != "plain" and len(form) < MIN_FORM) or not form:
            continue
        seen.add(form)
        out[label] = form
    return out


class Masker:
    """Masks a fixed set of secret values in text and bytes.

    ``values`` is either a mapping of secret names to values (so findings can
    name the secret) or plain values. Empty values are ignored.
    """

    def __init__(self, values: Mapping[str, str] | Iterable[str]) -> None:
        named: dict[str, str] = (
            dict(values)
            if isinstance(values, Mapping)
            else {f"secret #{i + 1}": v for i, v in enumerate(values)}
        )
        self._owner: dict[bytes, tuple[str, str]] = {}
        for name, value in named.items():
            if not value:
                continue
            for label, form in secret_forms(value).items():
                self._owner.setdefault(form, (name, label))
        # Matching ignores ASCII letter case: a key that comes back upper-cased (an
        # error page that shouts, a header a server folded) is still the key to whoever
        # folds it back. One pattern per form up to case, longest first, so a value is
        # masked whole rather than around a shorter form of it.
        self._lower: dict[bytes, bytes] = {}
        for form in self._owner:
            self._lower.setdefault(form.lower(), form)
        ordered = sorted(self._lower, key=lambda f: (-len(f), f))
        self.longest = len(ordered[0]) if ordered else 0
        flags = re.IGNORECASE | re.ASCII
        self._bytes_re = (
            re.compile(b"|".join(re.escape(f) for f in ordered), re.IGNORECASE) if ordered else None
        )
        self._text_re = (
            re.compile(
                "|".join(re.escape(f.decode("utf-8", "surrogateescape")) for f in ordered), flags
            )
            if ordered
            else None
        )
        # a form that holds another one is found by looking for the shorter: the quick
        # "any secret here?" test needs only the (lower-case) forms that contain no other
        self._probes = tuple(f for f in ordered if not any(g != f and g in f for g in ordered))
        # built on first use: most maskers (a CLI verb's, a plan's) never scan a byte
        self._prefilter: prefilter.Prefilter | None = None
        self._lowered = tuple(ordered)
        self._prefixes: frozenset[bytes] | None = None

    def __bool__(self) -> bool:
        return self._bytes_re is not None

    def forms(self) -> list[bytes]:
        """Every form masked as derived, both letter cases of hex too, longest first.

        For ``::add-mask::``, which matches exactly; the masker itself ignores case.
        """
        return sorted(self._owner, key=lambda f: (-len(f), f))

    def may_contain(self, data: bytes) -> bool:
        """False when no form is in ``data`` (``prefilter``): far faster than the regex."""
        if self._prefilter is None:
            # two threads racing here build two equal prefilters; either one serves
            self._prefilter = prefilter.build(self._probes)
        return self._prefilter.may_contain(data)

    def mask_bytes(self, data: bytes) -> bytes:
        if self._bytes_re is None or not self.may_contain(data):
            return data
        return self._bytes_re.sub(MASK.encode(), data)

    def mask_text(self, text: str) -> str:
        if self._text_re is None:
            return text
        return self._text_re.sub(MASK, text)

    def mask(self, data: str) -> str:
        return self.mask_text(data)

    def contains_secret(self, data: bytes | str) -> bool:
        """Whether any secret appears in ``data`` in any form (the secret-in-diff scan)."""
        if self._bytes_re is None:
            return False
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        return self._bytes_re.search(raw) is not None

    def find(self, data: bytes | str) -> list[SecretHit]:
        """Which secrets appear in ``data`` and in what form, each once, for a report."""
        if self._bytes_re is None:
            return []
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        hits: dict[tuple[str, str], None] = {}
        for match in self._bytes_re.finditer(raw):
            found = match.group(0)
            exact = self._owner.get(found)
            if exact is not None:
                hits.setdefault(exact, None)
                continue
            name, label = self._owner[self._lower[found.lower()]]
            hits.setdefault((name, f"{label}, letter case changed"), None)
        return [SecretHit(name, form) for name, form in hits]

    def prefixes(self) -> frozenset[bytes]:
        """Every proper prefix of every (lower-case) form: what a chunk may end with mid-form."""
        if self._prefixes is None:
            self._prefixes = frozenset(f[:k] for f in self._lowered for k in range(1, len(f)))
        return self._prefixes

    def stream(self) -> StreamMasker:
        return StreamMasker(self)


class StreamMasker:
    """Masks chunked output: ``feed`` each chunk, ``flush`` at the end.

    Holds back only the tail that could still become a secret: the bytes from
    the first position where what has arrived so far is the beginning of some
    form but not yet all of it. Output that cannot start a secret goes out at
    once (a log followed with ``tail -f`` stays live, a server-sent event is
    not delayed), and the result is byte for byte what masking the whole
    stream at once would give, wherever the chunks were cut: a match is only
    replaced once no longer form can still start where it starts, so the
    last characters of a base64 value arriving in the next chunk cannot
    follow a mask that took only its first part.
    """

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._prefixes = masker.prefixes() if masker else frozenset()
        self._firsts = frozenset(prefix[0] for prefix in self._prefixes if len(prefix) == 1)
        self._pending = b""

    def _undecided(self, low: bytes, start: int) -> int:
        """The first position ≥ ``start`` where ``low`` (lower-cased) ends inside a possible form."""
        size = len(low)
        prefixes, firsts = self._prefixes, self._firsts
        for p in range(max(start, size - self._masker.longest + 1), size):
            # most positions cannot begin a form at all: no slice for those
            if low[p] in firsts and low[p:] in prefixes:
                return p
        return size

    def feed(self, chunk: bytes) -> bytes:
        regex = self._masker._bytes_re
        if regex is None:
            return chunk
        # no copy of a chunk when nothing is held back, and none of the output when
        # nothing needs holding: the common case of a large body is one prefilter
        # pass, and only its last few bytes are looked at again
        data = self._pending + chunk if self._pending else chunk
        if not self._masker.may_contain(data):
            tail = max(0, len(data) - self._masker.longest + 1)
            hold = tail + self._undecided(data[tail:].lower(), 0)
            if hold == len(data):
                self._pending = b""
                return data
            self._pending = data[hold:]
            return data[:hold]
        low = data.lower()
        hold = self._undecided(low, 0)
        out = bytearray()
        pos = 0
        for match in regex.finditer(data):
            if match.start() >= hold:
                break
            # decided: a longer form cannot turn up here any more
            out += data[pos : match.start()] + MASK.encode()
            pos = match.end()
            if hold < pos:
                hold = self._undecided(low, pos)
        hold = max(hold, pos)
        out += data[pos:hold]
        self._pending = data[hold:]
        return bytes(out)

    __call__ = feed

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._masker.mask_bytes(rest)


@dataclass(frozen=True)
class FileHit:
    """A secret found in a changed file: where, which secret, in what form; never the value."""

    path: str
    name: str
    form: str
    # "content", "file name" or "link target"
    where: str


def scan_files(masker: Masker, root: Path, paths: Iterable[str]) -> list[FileHit]:
    """Look for secrets in the files an iteration would commit (the secret-in-diff scan).

    ``paths`` are relative to ``root`` (the worktree). Scans each path's
    name, each file's bytes, and each symlink's target (git stores the
    target as the blob), so neither a file named after a key nor a link
    pointing "at" it slips through. Deleted paths are scanned by name only.
    Scans the files rather than ``git diff`` text, where binary content is
    compressed and encoded out of reach.
    """
    hits: list[FileHit] = []
    if not masker:
        return hits

    def add(path: str, data: bytes, where: str) -> None:
        hits.extend(FileHit(path, h.name, h.form, where) for h in masker.find(data))

    for rel in paths:
        add(rel, rel.encode("utf-8", "surrogateescape"), "file name")
        full = root / rel
        try:
            if full.is_symlink():
                add(rel, os.fsencode(full.readlink()), "link target")
            elif full.is_file():
                add(rel, full.read_bytes(), "content")
        except OSError:
            continue
    return hits


def add_mask_commands(masker: Masker) -> list[str]:
    """GitHub Actions ``::add-mask::`` lines for every form, to print before any other output.

    Each line of a multi-line value is masked on its own (the runner matches
    line by line); ``%``, CR and LF are escaped as the workflow-command syntax
    requires.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for form in masker.forms():
        for part in form.decode("utf-8", "replace").splitlines() or [""]:
            if not part.strip() or part in seen:
                continue
            seen.add(part)
            escaped = part.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            lines.append(f"::add-mask::{escaped}")
    return lines
