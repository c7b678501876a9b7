"""A way out of the sandbox's own network: a port inside, the server outside that answers it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# the port HTTPS_PROXY names inside the sandbox's own network (nothing else listens there)
SANDBOX_EGRESS_PORT = 3128


@dataclass(frozen=True)
class SandboxPort:
    """``127.0.0.1:port`` inside the sandbox, answered by a server of outloop's outside.

    The sandbox's first process hands the listening socket it binds to the
    server through ``handoff`` (``handoff.py``); should the server not take
    it, that process relays each connection to ``socket`` instead.
    """

    port: int
    socket: Path
    handoff: Path
