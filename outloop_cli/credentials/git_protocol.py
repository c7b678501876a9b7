"""git's credential helper protocol: ``key=value`` lines ended by a blank line or EOF.

From git-credential(1): a key holds no ``=``, newline or NUL; a value holds no
newline or NUL; nothing is quoted; keys ending in ``[]`` may repeat (they are
lists: ``capability[]``, ``wwwauth[]``); attributes a helper does not know are
ignored. We are stricter than git on input, because the input may come from an
agent rather than from git: a CR or NUL anywhere, or a scalar key given twice
(git would silently keep the last), makes the whole request void. On output a
value that would break a line is never written.

git starts the credential helper for every request, so this module imports
nothing (a dataclass alone would pull in ``inspect`` and double the helper's
start-up).
"""

from __future__ import annotations

# `collections.abc` brings all of `collections` (a sixth of the helper's own start-up)
# for one annotation; type checkers still see it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_INPUT = 64 * 1024


class BadCredentialInput(ValueError):
    """The request is malformed in a way that could smuggle attributes; refuse it whole."""


class CredentialRequest:
    """One request's attributes (the last word for each key) and lists (``key[]`` lines)."""

    __slots__ = ("_attributes", "_lists")

    def __init__(
        self, attributes: Mapping[str, str], lists: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self._attributes = dict(attributes)
        self._lists = dict(lists or {})

    @property
    def attributes(self) -> Mapping[str, str]:
        return self._attributes

    @property
    def lists(self) -> Mapping[str, tuple[str, ...]]:
        return self._lists

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CredentialRequest):
            return NotImplemented
        return (self._attributes, self._lists) == (other._attributes, other._lists)

    def __hash__(self) -> int:
        return hash((tuple(self._attributes.items()), tuple(self._lists.items())))

    def __repr__(self) -> str:
        return f"CredentialRequest({self._attributes!r}, {self._lists!r})"

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
