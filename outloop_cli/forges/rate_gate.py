"""When a forge said the next request may go, shared by every request to that API.

A rate limit is the forge's, not one request's: once GitHub answers ``429``
with ``Retry-After: 2`` (or ``X-RateLimit-Remaining: 0`` with a reset time),
no request of this process may reach it before then, whichever thread,
client or session sends it. GitHub treats a request inside that window as
abuse. So the wait is recorded here, per API base URL, and every request
waits at the gate before it is sent, not only the one that was refused.

Times are on ``time.monotonic``: a wall-clock step must not open the gate early.
"""

from __future__ import annotations

import threading
import time

__all__ = ["RateGate", "gate_for"]


class RateGate:
    """The earliest moment the next request to one API may be sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def hold(self, seconds: float) -> None:
        """No request before ``seconds`` from now (a later hold already set is kept)."""
        until = time.monotonic() + max(0.0, seconds)
        with self._lock:
            self._not_before = max(self._not_before, until)

    def delay(self) -> float:
        """Seconds until the gate opens; 0 when it is open."""
        with self._lock:
            return max(0.0, self._not_before - time.monotonic())


_gates: dict[str, RateGate] = {}
_gates_lock = threading.Lock()


def gate_for(base_url: str) -> RateGate:
    """The process's one gate for the API at ``base_url``."""
    key = base_url.rstrip("/").lower()
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = RateGate()
        return gate
