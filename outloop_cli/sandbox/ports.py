"""A way out of the sandbox's own network: a port inside, the server outside that answers it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# the port HTTPS_PROXY names inside the sandbox's own network (nothing else listens there)
SANDBOX_EGRESS_PORT = 3128
# connections one server of a run (the access proxy, the egress proxy) holds at once:
# each is a file descriptor of the runner's, which the audit log, the run's records and
# its git need too; an agent that opens and holds more gets BUSY_RESPONSE and a closed
# connection instead of the runner's last descriptors
MAX_CONNECTIONS = 256
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


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
