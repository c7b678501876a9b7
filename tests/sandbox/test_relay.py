"""The sandbox's relay: a 127.0.0.1 connection carried both ways to a Unix socket, Nagle off."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from outloop_cli.sandbox import relay


def test_a_relayed_connection_carries_both_ways_with_nagle_off(tmp_path: Path) -> None:
    path = str(tmp_path / "broker.sock")
    broker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    broker.bind(path)
    broker.listen(1)
    listener = socket.create_server(("127.0.0.1", 0))
    agent = socket.create_connection(listener.getsockname(), timeout=10)
    accepted, _ = listener.accept()
    # what the relay is handed: a fresh accepted connection, Nagle on as the kernel makes it
    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    serving = threading.Thread(target=relay._serve_one, args=(accepted, path), daemon=True)
    serving.start()
    answered, _ = broker.accept()
    answered.settimeout(10)
    try:
        agent.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert answered.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
        # an answer in two pieces, as a proxy writes headers and then the body
        answered.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        answered.sendall(b"ok")
        received = b""
        while not received.endswith(b"ok"):
            received += agent.recv(100)
        assert received == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        agent.close()
        answered.close()
        serving.join(timeout=10)
        broker.close()
        listener.close()
    assert not serving.is_alive()
