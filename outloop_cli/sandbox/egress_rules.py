"""Which hosts a sandboxed run may reach beyond the broker, and which addresses they may be.

Two layers, as for keys: the user's policy says what a workspace may ever
reach (``egress`` of the workspace), a loop file asks for what it needs
(``sandbox.egress``) and gets only what lies inside the policy. A rule is
``host:port`` with ``*.`` allowed as the first label of the host
(``*.pythonhosted.org:443``); a bare IP address is a host like any other.

A host name is not where a connection goes: its addresses are. Every address
a name resolves to is checked after resolution, and the connection goes to
the address that was checked, so a name that resolves (or re-resolves) to
loopback, a private range or link-local is refused: DNS rebinding gains
nothing. Such addresses are reachable only where the policy lists them
(``reach_private``), e.g. a package mirror on the company network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "EgressRule",
    "EgressRules",
    "RuleError",
    "address_refusal",
    "narrow",
    "parse_network",
    "parse_rule",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")


class RuleError(ValueError):
    """A rule or address range that cannot be read; the message says why, with a hint."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class EgressRule:
    """``host:port``; ``host`` may start with ``*.`` (any name below it, not itself)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def admits(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and host != self.host[2:]
        return host == self.host

    def within(self, other: EgressRule) -> bool:
        """Everything this rule admits, ``other`` admits too."""
        if self.port != other.port:
            return False
        if self.host.startswith("*."):
            return other.host.startswith("*.") and (
                self.host == other.host or self.host.endswith(other.host[1:])
            )
        return other.admits(self.host, self.port)


@dataclass(frozen=True)
class EgressRules:
    """What one run may reach: the rules, and the non-public ranges its hosts may resolve to."""

    rules: tuple[EgressRule, ...] = ()
    reach_private: tuple[IPNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, host: str, port: int) -> EgressRule | None:
        for rule in self.rules:
            if rule.admits(host, port):
                return rule
        return None


def normalize_host(text: str) -> str:
    """Lowercase, no trailing dot, IPv6 without brackets; raises RuleError when not a host."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.removesuffix(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or len(host) > 253 or not _HOST_RE.fullmatch(host):
        raise RuleError(
            f"{text!r} is not a host name or IP address",
            "write a DNS name (ASCII, punycode for others) or an IP address",
        )
    return host


def parse_rule(text: str) -> EgressRule:
    """``host:port`` (IPv6 as ``[::1]:443``) into a rule."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("an egress rule is empty", "write host:port, e.g. pypi.org:443")
    raw = text.strip()
    if "://" in raw or "/" in raw or "@" in raw:
        raise RuleError(
            f"{text!r} is not host:port",
            "write only the host and port, e.g. pypi.org:443 (no scheme, path or user)",
        )
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit():
        raise RuleError(f"{text!r} has no port", "write host:port, e.g. pypi.org:443")
    port = int(port_text)
    if not 0 < port < 65536:
        raise RuleError(f"{text!r}: port {port} is out of range", "use a port from 1 to 65535")
    if host.startswith("*.") and "*" not in host[2:]:
        return EgressRule("*." + normalize_host(host[2:]), port)
    if "*" in host:
        raise RuleError(
            f"{text!r}: `*` is allowed only as the first label",
            "write e.g. *.pythonhosted.org:443",
        )
    return EgressRule(normalize_host(host), port)


def parse_network(text: str) -> IPNetwork:
    """An address range (``10.1.2.0/24``, a single address) a policy lets hosts resolve to."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise RuleError(
            f"{text!r} is not an address range", "write e.g. 10.20.0.0/16 or 127.0.0.2/32"
        ) from None


def narrow(policy: EgressRules, asked: tuple[EgressRule, ...]) -> tuple[EgressRules, list[str]]:
    """The rules a loop asked for that the policy allows, and the ones it does not (as text)."""
    kept: list[EgressRule] = []
    refused: list[str] = []
    for rule in asked:
        if any(rule.within(allowed) for allowed in policy.rules):
            kept.append(rule)
        else:
            refused.append(str(rule))
    return EgressRules(tuple(kept), policy.reach_private), refused


def address_refusal(address: IPAddress, reach_private: tuple[IPNetwork, ...]) -> str | None:
    """Why a connection to ``address`` is refused, or None when it may go there."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in reach_private):
        return None
    if address.is_global and not address.is_multicast:
        return None
    if address.is_loopback:
        return "resolves to loopback"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "resolves to an address that is not public"
    if address.is_link_local:
        return "resolves to a link-local address"
    if address.is_private:
        return "resolves to a private address"
    return "resolves to an address that is not public"
