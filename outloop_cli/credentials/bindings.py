"""Where a granted secret may be sent: the policy binds each secret to upstreams and git hosts.

The policy outside the repository says, per workspace and secret::

    secrets:
      - openai                                  # its well-known API only
      - name: crm
        upstreams: ["https://crm.example.com/api"]
      - name: github
        hosts: [github.com, ghe.example.com]
        upstreams: ["https://api.github.com", "https://ghe.example.com/api/v3"]

A loop file can only *narrow* that: a ``via: proxy`` credential's ``upstream``
must lie inside one of the secret's ``upstreams`` (same scheme, host and port;
its path under the binding's path), a ``via: git`` credential's ``host`` must be
one of its ``hosts``, and ``via: helper`` (the raw value in the agent's hands)
needs ``helper: true``. A secret whose entry does not say (a bare name) may go to
its well-known destinations (:data:`WELL_KNOWN`), and a secret with none may go
nowhere until the policy names them.

The plan checks every credential before a run starts; the access proxy checks
each request's destination again, and the broker each git host
(:meth:`Binding.allows_url`, :meth:`Binding.allows_host`). Pure logic, no I/O.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from outloop_cli.config.model import CredentialConfig
from outloop_cli.config.policy_model import SecretEntry


@dataclass(frozen=True)
class KnownDestinations:
    """Where a well-known key may be sent when the policy does not say: upstream URLs and git hosts."""

    upstreams: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


# Where a secret of this name may go when the policy names it without saying where:
# the API that issued such keys. The agent presets' default credentials go here
# (tests/credentials/test_bindings.py keeps them inside these).
WELL_KNOWN: dict[str, KnownDestinations] = {
    "openai": KnownDestinations(upstreams=("https://api.openai.com",)),
    "anthropic": KnownDestinations(upstreams=("https://api.anthropic.com",)),
    "gemini": KnownDestinations(upstreams=("https://generativelanguage.googleapis.com",)),
    "github": KnownDestinations(upstreams=("https://api.github.com",), hosts=("github.com",)),
    "gitlab": KnownDestinations(upstreams=("https://gitlab.com",), hosts=("gitlab.com",)),
}

_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Destination:
    """``scheme://host:port`` and a path: where a request goes, or where a binding allows."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Destination | None:
        """None for anything that is not a plain http(s) URL without credentials."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        if parts.username is not None or parts.password is not None:
            return None
        try:
            path = _plain_path(parts.path)
        except UnicodeDecodeError:
            return None
        if path is None:
            return None
        return cls(
            parts.scheme,
            parts.hostname.lower().rstrip("."),
            port or _DEFAULT_PORTS[parts.scheme],
            path,
        )

    def within(self, prefix: Destination) -> bool:
        """Same scheme, host and port, and the path under ``prefix``'s (at a ``/``)."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        base = prefix.path.rstrip("/")
        return not base or self.path == base or self.path.startswith(base + "/")


def _plain_path(path: str) -> str | None:
    """The path decoded once; None when it could mean another path to some server.

    Dot segments, backslashes, an encoded ``/`` or ``\\``, a second level of
    encoding or a control character would let a server that normalises
    differently reach a path outside the binding: such a destination is outside.
    """
    lowered = path.lower()
    if any(code in lowered for code in ("%2f", "%5c", "%25")):
        return None
    decoded = urllib.parse.unquote(path, errors="strict")
    if "\\" in decoded or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        return None
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return None
    return decoded


def _normal_host(host: str) -> str:
    """``GitHub.com.`` and ``github.com:443`` name github.com; other ports stay."""
    host = host.strip().lower()
    if host.endswith(":443"):
        host = host[: -len(":443")]
    return host.rstrip(".")


@dataclass(frozen=True)
class Binding:
    """Where one secret of one workspace may go, and which line of the policy says so."""

    name: str
    upstreams: tuple[str, ...]
    hosts: tuple[str, ...]
    helper: bool
    # "policy.yml:7" for an entry of the policy; the policy's path and the secret's
    # line for a bare name whose well-known destinations apply
    origin: str
    well_known: bool = False

    @classmethod
    def of(cls, entry: SecretEntry, policy_path: str) -> Binding:
        known = WELL_KNOWN.get(entry.name, KnownDestinations())
        upstreams = entry.upstreams if entry.upstreams is not None else known.upstreams
        hosts = entry.hosts if entry.hosts is not None else known.hosts
        origin = f"{policy_path}:{entry.line}" if entry.line is not None else policy_path
        return cls(
            entry.name,
            tuple(upstreams),
            tuple(_normal_host(h) for h in hosts),
            entry.helper,
            origin,
            well_known=entry.upstreams is None or entry.hosts is None,
        )

    @classmethod
    def to_itself(cls, config: CredentialConfig) -> Binding:
        """A binding to exactly what ``config`` names (a broker built without a policy)."""
        return cls(
            config.name,
            (config.upstream,) if config.upstream else (),
            (_normal_host(config.host),) if config.host else (),
            config.via == "helper",
            "the credential itself",
        )

    # -- checks -----------------------------------------------------------------

    def allows_url(self, url: str) -> bool:
        """Whether a request to ``url`` (or an upstream base URL) is inside the binding."""
        target = Destination.parse(url)
        if target is None:
            return False
        for allowed in self.upstreams:
            prefix = Destination.parse(allowed)
            if prefix is not None and target.within(prefix):
                return True
        return False

    def allows_destination(self, scheme: str, host: str, port: int, decoded_path: str) -> bool:
        """Whether a request the proxy would forward (its path decoded once) is inside."""
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded_path) or "\\" in decoded_path:
            return False
        if any(segment in (".", "..") for segment in decoded_path.split("/")):
            return False
        target = Destination(scheme, host.lower().rstrip("."), port, decoded_path)
        for allowed in self.upstreams:
            prefix = Destination.parse(allowed)
            if prefix is not None and target.within(prefix):
                return True
        return False

    def allows_host(self, host: str) -> bool:
        return _normal_host(host) in self.hosts

    def refusal(self, config: CredentialConfig) -> str | None:
        """Why ``config`` would send this secret outside the binding; None when it stays inside."""
        if config.via == "proxy":
            if config.upstream is not None and self.allows_url(config.upstream):
                return None
            return (
                f"`{config.upstream}` is not where the policy lets `{self.name}` go "
                f"({self._says('upstreams', self.upstreams)})"
            )
        if config.via == "git":
            # a forge token asked for by outloop names no host: its API URL is checked
            # by the caller (url_refusal), its pushes by the broker
            if config.host is None or self.allows_host(config.host):
                return None
            return (
                f"git host `{config.host}` is not where the policy lets `{self.name}` go "
                f"({self._says('hosts', self.hosts)})"
            )
        if self.helper:
            return None
        return (
            f"`via: helper` hands `{self.name}` to the agent raw, and the policy does not allow "
            f"that ({self.origin}: no `helper: true`)"
        )

    def url_refusal(self, url: str, what: str) -> str | None:
        """Why ``url`` (a forge API, say) is outside the binding; None when inside."""
        if self.allows_url(url):
            return None
        return (
            f"{what} `{url}` is not where the policy lets `{self.name}` go "
            f"({self._says('upstreams', self.upstreams)})"
        )

    def host_refusal(self, host: str, what: str) -> str | None:
        if self.allows_host(host):
            return None
        return (
            f"{what} `{host}` is not where the policy lets `{self.name}` go "
            f"({self._says('hosts', self.hosts)})"
        )

    def _says(self, key: str, values: Sequence[str]) -> str:
        if not values:
            return f"{self.origin}: no `{key}:` for `{self.name}`"
        listed = ", ".join(values)
        if self.well_known and self.name in WELL_KNOWN:
            return f"{self.origin}: no `{key}:`, so only its well-known {listed}"
        return f"{self.origin}: {key} {listed}"

    def hint(self, config: CredentialConfig) -> str:
        key = "hosts" if config.via == "git" else "upstreams"
        if config.via == "helper":
            example = f"{{name: {self.name}, helper: true}}"
        elif config.via == "git":
            example = f"{{name: {self.name}, hosts: [{config.host}]}}"
        else:
            example = f'{{name: {self.name}, upstreams: ["{_origin_of(config.upstream)}"]}}'
        return (
            f"if `{self.name}` may truly go there, say so in the policy ({self.origin}), "
            f"e.g. `- {example}`; a loop file can narrow `{key}:`, never widen it"
        )


def _origin_of(url: str | None) -> str:
    target = Destination.parse(url or "")
    if target is None:
        return url or "https://host"
    parts = urllib.parse.urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}{target.path.rstrip('/')}"


__all__ = ["WELL_KNOWN", "Binding", "Destination", "KnownDestinations"]
