"""Inside the sandbox: 127.0.0.1 ports relayed to Unix sockets of outloop's, then the agent.

The sandbox has a network namespace of its own with nothing but loopback, so
the agent can reach no host, no port and no abstract socket of the machine.
The ways out are Unix sockets bound into the sandbox: the access proxy's
(relayed on the port the proxy has outside, so the agent's base URLs stay
what they are) and, when the loop may reach hosts beyond it, the egress
proxy's (the port ``HTTPS_PROXY`` names). This program listens on each
``127.0.0.1:PORT`` inside, relays each connection to its socket, and runs
the agent as its child, passing signals on and exiting with its status.

It is a separate program, run by the sandbox's Python with ``-I -S`` from
this file's source: standard library only, nothing of outloop imported.
Usage: ``relay.py PORT SOCKET [PORT SOCKET ...] -- ARGV...``.
"""

import signal
import socket
import subprocess
import sys
import threading

_CHUNK = 1 << 16


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve_one(client: socket.socket, path: str) -> None:
    # Nagle off toward the agent: a response reaches the relay in pieces (headers, then
    # the body) and each piece is sent on as it comes; with Nagle the second waited for
    # the agent's ACK of the first, 2 ms added to every small request (bench: proxy p50)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept(listener: socket.socket, path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_serve_one, args=(client, path), daemon=True).start()


def main(argv: list[str]) -> int:
    if "--" not in argv:
        sys.stderr.write("usage: relay.py PORT SOCKET [PORT SOCKET ...] -- ARGV...\n")
        return 2
    split = argv.index("--")
    pairs, command = argv[:split], argv[split + 1 :]
    if not command or not pairs or len(pairs) % 2:
        sys.stderr.write("usage: relay.py PORT SOCKET [PORT SOCKET ...] -- ARGV...\n")
        return 2
    for port, path in zip(pairs[::2], pairs[1::2], strict=True):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(128)
        # listening before the agent starts: its first request never finds the port closed
        threading.Thread(target=_accept, args=(listener, path), daemon=True).start()
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = child.wait()
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
