"""What the access proxy may forward for one credential: its upstream, allow rules and key header.

Built once per run from the loop's ``credentials:`` (``via: proxy``) and the
granted key. Pure logic, no I/O, so that every decision the proxy makes about
a path can be tested without a socket.

Paths. Servers disagree on what a path means (Tomcat reads ``/..;/`` as
``/../``, IIS turns ``\\`` into ``/``, some decode ``%2F`` and some decode
twice), so an allow rule checked against the text the agent sent says nothing
about what the upstream will serve. The proxy therefore decodes the path
exactly once into one meaning, refuses every path on which servers could
disagree, matches ``allow`` against that meaning, and forwards its canonical
encoding, never the agent's bytes. Refused (400, ``bad_path`` with the detail):
dot segments (``.``, ``..``, also encoded), ``;`` parameters, an encoded ``/``
or ``\\``, any ``%25`` (a second layer of encoding), a backslash, control
characters, ``#``, malformed or non-UTF-8 escapes, and characters that
Unicode compatibility folding changes (a full-width ``／`` or ``．``). Repeated
slashes are folded into one.
"""

from __future__ import annotations

import re
import ssl
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials.bindings import Binding
from outloop_cli.credentials.hosts import is_loopback
from outloop_cli.errors import CouldNotRun

# control characters, and what some server would read as a separator or the end of the path
_BAD_RAW = re.compile(r"[\x00-\x20\x7f\\#]")
_BAD_DECODED = re.compile(r"[\x00-\x1f\x7f\\#?]")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# what is forwarded unencoded: RFC 3986 pchar without ';' (refused) and '%' (re-encoded)
_PATH_SAFE = "/:@!$&'()*+,=-._~"


@dataclass(frozen=True)
class AllowRule:
    """``METHOD /path`` where ``*`` matches any text (``/`` included) and method ``*`` any method."""

    method: str
    pattern: str

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        method, sep, path = text.strip().partition(" ")
        if not sep or not path.startswith("/"):
            raise ValueError(f"{text!r} is not a 'METHOD /path' rule")
        return cls(method.upper(), path.strip())

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        # only * is special (fnmatch would also give [] and ? a meaning)
        regex = ".*".join(re.escape(part) for part in self.pattern.split("*"))
        return re.fullmatch(regex, path, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class Upstream:
    """The scheme, host, port and base path a proxy route forwards to."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"{url!r} must not carry credentials, a query or a fragment")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            # a key sent in clear over a network is a leaked key
            raise ValueError(f"{url!r} uses plain http to a host that is not this machine")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def netloc(self) -> str:
        return self.origin.split("://", 1)[1]


class PathRefused(Exception):
    """A path the proxy will not forward; ``detail`` says why, in words that carry no path."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.reason = "bad_path"
        self.detail = detail


@dataclass(frozen=True)
class UpstreamPath:
    """One request's path on the upstream: what ``allow`` is matched against, and what is sent."""

    decoded: str
    encoded: str


def normalise_path(rest: str) -> str:
    """``rest`` (as the agent sent it, still percent-encoded) decoded once into its one meaning.

    Raises :class:`PathRefused` for anything servers could read differently.
    """
    if rest and not rest.startswith("/"):
        raise PathRefused("the path does not start with /")
    if _BAD_RAW.search(rest):
        raise PathRefused("a backslash, a control character, a space or # in the path")
    if _ESCAPE.search(rest):
        raise PathRefused("a % that is not a valid escape")
    lowered = rest.lower()
    if "%25" in lowered:
        raise PathRefused("an encoded % (a path encoded twice)")
    if "%2f" in lowered or "%5c" in lowered:
        raise PathRefused("an encoded / or \\ (servers split such a path differently)")
    try:
        decoded = urllib.parse.unquote(rest, errors="strict")
    except UnicodeDecodeError:
        raise PathRefused("an escape that is not UTF-8") from None
    if _BAD_DECODED.search(decoded):
        raise PathRefused("an encoded control character, ? or #")
    if unicodedata.normalize("NFKC", decoded) != decoded:
        raise PathRefused("characters that Unicode folding changes (full-width / or .)")
    segments = decoded.split("/")
    if any(";" in segment for segment in segments):
        raise PathRefused("a ; parameter in the path (some servers drop what follows it)")
    if any(segment in (".", "..") for segment in segments):
        raise PathRefused("a . or .. segment")
    # '//' is '/' to most servers and a different path to some: send the one meaning
    return re.sub("/{2,}", "/", decoded)


@dataclass(frozen=True)
class ProxyRoute:
    """One route of the access proxy: the upstream, the header the key goes in, and what may be asked."""

    name: str
    upstream: Upstream
    header: str
    scheme: str
    allow: tuple[AllowRule, ...]
    # PEM text of the CA certificates to trust instead of the system's, if any
    ca_pem: str | None = None
    _key: str = field(default="", repr=False)
    # where the policy lets this key go: checked again for every request
    binding: Binding | None = None

    @classmethod
    def build(
        cls,
        config: CredentialConfig,
        key: str,
        ca_pem: str | None = None,
        binding: Binding | None = None,
    ) -> ProxyRoute:
        if config.upstream is None:
            raise CouldNotRun(f"credential `{config.name}` (via: proxy) has no upstream")
        if any(c in key for c in "\r\n\0"):
            raise CouldNotRun(
                f"the secret for `{config.name}` contains a line break or NUL, "
                "which cannot go into an HTTP header",
                hint="store it again without the trailing newline: outloop secrets set",
            )
        try:
            upstream = Upstream.parse(config.upstream)
            rules = tuple(AllowRule.parse(rule) for rule in config.allow)
        except ValueError as exc:
            raise CouldNotRun(f"credential `{config.name}`: {exc}") from None
        bound = binding if binding is not None else Binding.to_itself(config)
        why = bound.refusal(config)
        if why is not None:
            raise CouldNotRun(f"credential `{config.name}`: {why}", hint=bound.hint(config))
        scheme = config.scheme
        if scheme is None:
            # SPEC §2's default applies to Authorization only: `x-api-key: Bearer <key>`
            # is what no API wants
            scheme = "Bearer" if config.header.lower() == "authorization" else ""
        return cls(config.name, upstream, config.header, scheme, rules, ca_pem, key, bound)

    def within_binding(self, path: UpstreamPath) -> bool:
        """Whether a request to ``path`` stays where the policy lets the key go."""
        if self.binding is None:
            return False
        return self.binding.allows_destination(
            self.upstream.scheme, self.upstream.host, self.upstream.port, path.decoded
        )

    def header_value(self) -> str:
        return f"{self.scheme} {self._key}" if self.scheme else self._key

    def upstream_path(self, rest: str) -> UpstreamPath:
        """The path on the upstream for ``rest`` (what followed the route in the proxy URL)."""
        decoded = (self.upstream.base_path + normalise_path(rest)) or "/"
        return UpstreamPath(decoded, urllib.parse.quote(decoded, safe=_PATH_SAFE))

    def allows(self, method: str, path: UpstreamPath) -> bool:
        if not self.allow:
            base = self.upstream.base_path
            return path.decoded == (base or "/") or path.decoded.startswith(base + "/")
        return any(rule.matches(method, path.decoded) for rule in self.allow)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.upstream.scheme != "https":
            return None
        if self.ca_pem is not None:
            return ssl.create_default_context(cadata=self.ca_pem)
        return ssl.create_default_context()


__all__ = ["AllowRule", "PathRefused", "ProxyRoute", "Upstream", "UpstreamPath", "normalise_path"]
