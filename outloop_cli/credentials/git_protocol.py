"""git's credential helper protocol: ``key=value`` lines ended by a blank line or EOF.

From git-credential(1): a key holds no ``=``, newline or NUL; a value holds no
newline or NUL; nothing is quoted; keys ending in ``[]`` may repeat (they are
lists: ``capability[]``, ``wwwauth[]``); attributes a helper does not know are
ignored. We are stricter than git on input, because the input may come from an
agent rather than from git: a CR or NUL anywhere, or a scalar key given twice
(git would silently keep the last), makes the whole request void. On output a
value that would break a line is never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_INPUT = 64 * 1024


class BadCredentialInput(ValueError):
    """The request is malformed in a way that could smuggle attributes; refuse it whole."""


@dataclass(frozen=True)
class CredentialRequest:
    attributes: Mapping[str, str]
    lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.attributes.get(key)

    @property
    def protocol(self) -> str | None:
        return self.attributes.get("protocol")

    @property
    def host(self) -> str | None:
        return self.attributes.get("host")

    @property
    def path(self) -> str | None:
        return self.attributes.get("path")

    @property
    def username(self) -> str | None:
        return self.attributes.get("username")


def parse(data: bytes) -> CredentialRequest:
    if len(data) > MAX_INPUT:
        raise BadCredentialInput("credential request too large")
    if b"\0" in data:
        raise BadCredentialInput("NUL byte in credential request")
    if b"\r" in data:
        raise BadCredentialInput("carriage return in credential request")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCredentialInput("credential request is not UTF-8") from None
    attributes: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for line in text.split("\n"):
        if not line:
            # a blank line ends the description; anything after it is not ours
            break
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise BadCredentialInput(f"malformed line in credential request: {key[:40]!r}")
        if key.endswith("[]"):
            lists.setdefault(key[:-2], []).append(value)
        elif key in attributes:
            raise BadCredentialInput(f"attribute {key!r} given twice")
        else:
            attributes[key] = value
    return CredentialRequest(attributes, {k: tuple(v) for k, v in lists.items()})


def format_reply(attributes: Mapping[str, str | int]) -> bytes:
    lines = []
    for key, raw in attributes.items():
        value = str(raw)
        if any(c in key for c in "=\n\0") or any(c in value for c in "\r\n\0"):
            raise BadCredentialInput(f"cannot send attribute {key!r}: it contains a line break")
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode()


DECLINE = b"quit=1\n"
