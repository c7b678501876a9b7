"""Inside the sandbox: 127.0.0.1:PORT relayed to the access proxy's Unix socket, then the agent.

The sandbox has a network namespace of its own with nothing but loopback, so
the agent can reach no host, no port and no abstract socket of the machine.
The one way out is the access proxy's Unix socket, bound into the sandbox;
this program listens on ``127.0.0.1:PORT`` inside (the port the proxy has
outside, so the agent's base URLs stay what they are), relays each
connection to the socket, and runs the agent as its child, passing signals
on and exiting with the agent's status.

It is a separate program, run by the sandbox's Python with ``-I -S`` from
this file's source: standard library only, nothing of outloop imported.
Usage: ``relay.py PORT SOCKET -- ARGV...``.
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
    port, path, separator, *command = argv
    if separator != "--" or not command:
        sys.stderr.write("usage: relay.py PORT SOCKET -- ARGV...\n")
        return 2
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
