"""A stopped fake server never answers for the next one: the suite's one flake, at its cause."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from tests.fakes.accept_loop import AcceptLoop

Handler = Callable[[socket.socket], None]
# starts a server's accept thread on a listening socket; returns how to stop that server
Serve = Callable[[socket.socket, Handler], Callable[[], None]]


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _answer(word: bytes) -> Handler:
    def handle(conn: socket.socket) -> None:
        conn.sendall(word)
        conn.close()

    return handle


def _answers_after_stopping(serve: Serve, *, ghost: threading.Event | None = None) -> list[str]:
    """Serve 'old', stop it, open a new listener (it takes the freed fd number), ask it 3 times.

    The first client connects before the new server's own loop starts: only a thread of
    the old server could take it then. With ``ghost``, the old server's thread is known to
    be waiting for the number to be reused; it is told so, and given the first client.
    """
    stop_old = serve(_listener(), _answer(b"old"))
    stop_old()
    new = _listener()
    first = socket.create_connection(new.getsockname(), timeout=10)
    answers = []
    if ghost is not None:
        ghost.set()
        answers.append(first.recv(16).decode())
    serving = AcceptLoop(new, _answer(b"new")).start()
    try:
        if ghost is None:
            answers.append(first.recv(16).decode())
        for _ in range(2):
            with socket.create_connection(new.getsockname(), timeout=10) as client:
                answers.append(client.recv(16).decode())
    finally:
        first.close()
        serving.stop()
    return answers


def test_a_stopped_accept_loop_takes_no_connection_of_the_next_socket() -> None:
    def started(sock: socket.socket, handle: Handler) -> Callable[[], None]:
        return AcceptLoop(sock, handle).start().stop

    def never_started(sock: socket.socket, handle: Handler) -> Callable[[], None]:
        return AcceptLoop(sock, handle).stop

    assert _answers_after_stopping(started) == ["new"] * 3
    assert _answers_after_stopping(never_started) == ["new"] * 3


def test_control_an_accept_that_read_the_fd_before_the_close_takes_the_next_socket() -> None:
    """The race AcceptLoop closes, played in order: an accept thread descheduled between
    reading its socket's fd number and the accept call wakes up after a plain close, on
    whatever socket got the number, and answers that socket's first client as the old one."""
    reused = threading.Event()

    def close_under_accept(sock: socket.socket, handle: Handler) -> Callable[[], None]:
        number = sock.fileno()

        def accept_late() -> None:
            reused.wait(10)
            ghost = socket.socket(fileno=number)
            conn, _ = ghost.accept()
            ghost.detach()  # the number is the new socket's now: not this thread's to close
            handle(conn)

        threading.Thread(target=accept_late, daemon=True).start()
        return sock.close

    assert _answers_after_stopping(close_under_accept, ghost=reused) == ["old", "new", "new"]
