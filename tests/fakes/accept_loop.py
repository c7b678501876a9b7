"""Accepting connections on a thread of its own, and stopping without stealing another's.

Closing a listening socket while another thread is blocked in ``accept()``
on it does not stop that thread: it stays in the call, and once the fd
number is given to the next socket the process opens (another fake server's
listener, a few tests later), it accepts that socket's connections and
answers them as the old server would. That was the suite's one flake: git's
first request to the fake git host got an empty reply or a reset from a
dead test's listener. So the loop waits in ``select`` with a short timeout,
checks its stop flag, and the socket is closed only after the thread has
ended.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Callable

__all__ = ["AcceptLoop"]

_POLL = 0.05


class AcceptLoop:
    """``AcceptLoop(listening_socket, on_connection).start()``; ``stop()`` ends it, then closes."""

    def __init__(self, sock: socket.socket, on_connection: Callable[[socket.socket], None]) -> None:
        self.sock = sock
        self._on_connection = on_connection
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AcceptLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(_POLL):
                    continue
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    continue
                self._on_connection(conn)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sock.close()
