"""Run capabilities: random, short-lived, scoped handles that let a caller use a credential.

A capability is not a secret value. It names what a caller may ask the run's
broker for (which run, which workspace, which credential names, for what
purpose) and is worthless once the run ends: every capability is revoked with
the run, and one that is not renewed expires on its own after its TTL.

Tokens are compared with ``hmac.compare_digest`` against every live entry, so
a caller learns nothing from response timing about how much of a guess was
right. Revoked and expired tokens are remembered by digest only, so that a
refusal can say *why* (a reused token is worth an audit line of its own)
without keeping the token itself around.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum

# 32 random bytes: as strong as the keys it stands for, short enough for a URL path
_TOKEN_BYTES = 32


class Purpose(str, Enum):
    """Who a capability was issued to; one caller's capability never serves another."""

    # the agent calls an upstream through the proxy, one capability per credential
    PROXY = "proxy"
    # the agent's git asks the helper for via: git hosts, or a tool asks for via: helper
    AGENT = "agent"
    # outloop's own push, from outside the agent
    PUSH = "push"


class Refusal(str, Enum):
    """Why a capability did not admit a request; recorded in the audit log as is."""

    UNKNOWN = "capability_unknown"
    REVOKED = "capability_revoked"
    EXPIRED = "capability_expired"
    WRONG_PURPOSE = "capability_wrong_purpose"
    NOT_IN_SCOPE = "credential_not_in_scope"
    # the loop's `approve.credentials` names it and no human has approved it yet
    AWAITING_APPROVAL = "awaiting_approval"


@dataclass
class Capability:
    """One token the broker handed out: which run and workspace it serves, which keys it opens, until when."""

    token: str
    run_id: str
    workspace: str
    purpose: Purpose
    # credential names this capability may use; nothing else
    names: frozenset[str]
    expires_at: float
    # for a push capability: the only URL path (repo) the token may be used for
    path: str | None = None
    revoked: bool = field(default=False)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class CapabilityDenied(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class CapabilityTable:
    """The capabilities of one run. Thread-safe; the clock is injectable for tests."""

    def __init__(
        self,
        *,
        run_id: str,
        workspace: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0, not {ttl}")
        self.run_id = run_id
        self.workspace = workspace
        self.ttl = ttl
        self._clock = clock
        self._wall_clock = wall_clock
        self._live: list[Capability] = []
        # digests of tokens that no longer work, so reuse is reported as reuse
        self._dead: dict[bytes, Refusal] = {}
        self._lock = threading.Lock()

    def issue(
        self, purpose: Purpose, names: Iterable[str], *, path: str | None = None
    ) -> Capability:
        capability = Capability(
            token=secrets.token_urlsafe(_TOKEN_BYTES),
            run_id=self.run_id,
            workspace=self.workspace,
            purpose=purpose,
            names=frozenset(names),
            expires_at=self._clock() + self.ttl,
            path=path,
        )
        with self._lock:
            self._live.append(capability)
        return capability

    def check(
        self, token: str, purposes: Collection[Purpose], name: str | None = None
    ) -> Capability:
        """The live capability for ``token``, or ``CapabilityDenied`` saying why not.

        ``name`` is the credential asked for; None means "any of its names"
        (the caller then picks among ``capability.names``).
        """
        now = self._clock()
        given = token.encode("utf-8", "surrogateescape")
        found: Capability | None = None
        with self._lock:
            self._expire(now)
            # compare against every entry, not just until a match: constant work per call
            for capability in self._live:
                if hmac.compare_digest(capability.token.encode(), given):
                    found = capability
            if found is None:
                raise CapabilityDenied(self._dead.get(_digest(given), Refusal.UNKNOWN))
        if found.purpose not in purposes:
            raise CapabilityDenied(Refusal.WRONG_PURPOSE)
        if name is not None and name not in found.names:
            raise CapabilityDenied(Refusal.NOT_IN_SCOPE)
        return found

    def renew(self, ttl: float | None = None) -> None:
        """Push back the expiry of every live capability to now + ``ttl`` (default: the table's)."""
        seconds = self.ttl if ttl is None else ttl
        if seconds <= 0:
            raise ValueError(f"ttl must be > 0, not {seconds}")
        with self._lock:
            now = self._clock()
            self._expire(now)
            for capability in self._live:
                capability.expires_at = now + seconds

    def revoke(self, capability: Capability) -> None:
        with self._lock:
            self._kill(capability, Refusal.REVOKED)
            self._live = [c for c in self._live if c is not capability]

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self._live)
            for capability in self._live:
                self._kill(capability, Refusal.REVOKED)
            self._live = []
        return count

    def expires_at_wall(self, capability: Capability) -> int:
        """The expiry as a Unix timestamp (what git's ``password_expiry_utc`` wants)."""
        return int(self._wall_clock() + max(0.0, capability.expires_at - self._clock()))

    def live_tokens(self) -> list[str]:
        """Tokens still in use, for masking them in logs (they are handles, but still private)."""
        with self._lock:
            return [c.token for c in self._live]

    def _expire(self, now: float) -> None:
        expired = [c for c in self._live if c.expired(now)]
        for capability in expired:
            self._kill(capability, Refusal.EXPIRED)
        if expired:
            self._live = [c for c in self._live if not c.expired(now)]

    def _kill(self, capability: Capability, why: Refusal) -> None:
        capability.revoked = True
        self._dead[_digest(capability.token.encode())] = why


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
