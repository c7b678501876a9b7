"""Inside the sandbox: 127.0.0.1 ports for outloop's servers, then the agent.

The sandbox has a network namespace of its own with nothing but loopback, so
the agent can reach no host, no port and no abstract socket of the machine.
The ways out are outloop's servers: the access proxy (on the port it has
outside, so the agent's base URLs stay what they are) and, when the loop may
reach hosts beyond it, the egress proxy (the port ``HTTPS_PROXY`` names).
This program binds each ``127.0.0.1:PORT`` inside and hands the listening
socket to its server through the ``HANDOFF`` Unix socket bound in
(``handoff.py``): the server then accepts the agent's connections itself.
Should a server not take it, this program relays each connection to the
server's ``SOCKET`` instead, a byte at a time both ways. Then it runs the agent
as its child, passing signals on and exiting with its status; while it lives
it holds the handoff connections open, which keeps the ports served.

It is a separate program, run by the sandbox's Python with ``-I -S`` from
this file's source: standard library only, nothing of outloop imported.
Usage: ``relay.py PORT SOCKET HANDOFF [PORT SOCKET HANDOFF ...] -- ARGV...``.
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


def hand_over(
    listener: socket.socket, path: str, port: int, timeout: float = 10.0
) -> socket.socket:
    """``listener`` to the server at ``path``; the connection to hold while it serves the port.

    Raises OSError when the server cannot be reached or says ``no``.
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect(path)
        socket.send_fds(conn, [b"outloop-listener %d\n" % port], [listener.fileno()])
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < 256:
            more = conn.recv(256)
            if not more:
                break
            reply += more
        if reply != b"ok\n":
            raise OSError(f"it answered {reply[:200]!r}")
        conn.settimeout(None)
    except BaseException:
        conn.close()
        raise
    return conn


def _open(port: int, path: str, handoff: str) -> socket.socket | None:
    """``127.0.0.1:port`` served: by its server when it takes it (the connection to hold)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    # listening before the agent starts: its first request never finds the port closed
    try:
        held = hand_over(listener, handoff, port)
    except OSError as error:
        sys.stderr.write(f"outloop relay: 127.0.0.1:{port} relayed here ({error})\n")
        threading.Thread(target=_accept, args=(listener, path), daemon=True).start()
        return None
    listener.close()
    return held


def main(argv: list[str]) -> int:
    usage = "usage: relay.py PORT SOCKET HANDOFF [PORT SOCKET HANDOFF ...] -- ARGV...\n"
    if "--" not in argv:
        sys.stderr.write(usage)
        return 2
    split = argv.index("--")
    ports, command = argv[:split], argv[split + 1 :]
    if not command or not ports or len(ports) % 3:
        sys.stderr.write(usage)
        return 2
    # held until this program exits: each keeps its port served by its server
    held = [
        _open(int(port), path, handoff)
        for port, path, handoff in zip(ports[::3], ports[1::3], ports[2::3], strict=True)
    ]
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = child.wait()
    for conn in held:
        if conn is not None:
            conn.close()
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
