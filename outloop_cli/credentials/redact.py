"""The access proxy's scrubber: nothing derived from a key leaves the proxy in any form masking knows.

The forms are masking's (``masking.secret_forms``: the value, base64 and
base64url at every alignment, hex, percent-encoding in its variants, JSON
escaping), so the proxy, the logs and the secret scan look for the same
things. What the proxy adds is where it looks:

- bodies as a stream (``stream()``): a key split across two reads, two
  chunks or two decompressed pieces is still caught, and nothing that cannot
  start a key is held back, so server-sent events are not delayed;
- header values, the Location it rewrites, error text (``redact_text``);
- header *names* (``redact_name``): a key of token characters is a valid
  name, and a server that lower-cases names hands it back folded, which
  masking, ignoring letter case, still finds.

The reason phrase is never copied from the upstream at all (the proxy sends
the standard phrase of the status), and trailers are never forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable

from outloop_cli.credentials.masking import MASK, Masker, StreamMasker

REPLACEMENT = MASK.encode()


class Redactor:
    """Replaces every form of a set of secrets in whole values and in streams."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._masker = Masker([value for value in secrets if value])
        self.longest = self._masker.longest

    @property
    def empty(self) -> bool:
        return not self._masker

    def redact_bytes(self, data: bytes) -> bytes:
        return self._masker.mask_bytes(data)

    def redact_text(self, data: str) -> str:
        if self.empty:
            return data
        return self.redact_bytes(data.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )

    def redact_name(self, name: str) -> str:
        """A header name with every form of every secret replaced."""
        return self.redact_text(name)

    def redact_header_value(self, value: str) -> str:
        return self.redact_text(value)

    def stream(self) -> StreamMasker:
        return self._masker.stream()


__all__ = ["REPLACEMENT", "Redactor"]
