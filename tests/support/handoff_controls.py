"""The controls' handoff socket: the one-connection rule of sandbox/handoff.py taken out."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from outloop_cli.sandbox.handoff import ListenerHandoff


async def accept_every(self: ListenerHandoff, listener: socket.socket, path: Path) -> None:
    """``ListenerHandoff._accept_once`` as a run's one handoff socket was before: every
    connection taken, for as long as the server runs (no cap, no window)."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            conn, _ = await loop.sock_accept(listener)
            self._pending += 1
            self._track(loop.create_task(self._take(conn)))
    finally:
        listener.close()
