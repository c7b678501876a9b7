"""Attacker agent: hands the broker a socket whose close() waits, to stall the broker's thread.

A connected TCP socket with data its peer never reads, set to linger for
LINGER seconds: whoever closes its last reference waits that long in
``close()``. The agent hands it to the broker through the handoff socket,
closes its own copies, and times the broker's answer and one request through
the proxy right after. Had the broker's event loop been held, every request of
the run would wait with it.

MODE ``direct``: the lingering socket is the descriptor handed over (refused:
not listening). MODE ``nested``: the descriptor handed over is one end of a
socketpair with the lingering socket queued inside it (refused: not TCP); the
broker's last close of that end releases what it holds.

Whoever lets go last waits, so an attempt where the agent's own close() was
the one that waited (the broker dropped its copy first) is lost, and the agent
tries again, up to five times; ``seconds`` leaves out its own close.

Arguments: the base-URL variable, LINGER (seconds), MODE. Prints one JSON line.
"""

import json
import os
import socket
import struct
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

base = os.environ[sys.argv[1]]
linger = int(sys.argv[2])
mode = sys.argv[3]
port = urllib.parse.urlsplit(base).port
[handoff] = sorted(str(p) for p in Path("/run").glob("outloop-handoff-*.sock"))
kept = []


def lingering() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))
    stuck = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    kept.extend([server, peer])  # the peer is never read
    stuck.setblocking(False)
    try:
        while True:
            stuck.send(b"x" * 65536)
    except BlockingIOError:
        pass
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
    return stuck


def attempt() -> dict[str, object]:
    stuck = lingering()
    if mode == "nested":
        inner, sent = socket.socketpair()
        socket.send_fds(inner, [b"x"], [stuck.fileno()])
        inner.close()
        stuck.close()  # held by the message queued in the pair
    else:
        sent = stuck
    found: dict[str, object] = {}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(handoff)
        started = time.monotonic()
        socket.send_fds(conn, [b"outloop-listener %d\n" % port], [sent.fileno()])
        closing = time.monotonic()
        sent.close()
        own_close = time.monotonic() - closing
        found["reply"] = conn.recv(200).decode(errors="replace")
    with urllib.request.urlopen(base + "/echo", timeout=60) as response:
        found["status"] = response.status
    found["seconds"] = round(time.monotonic() - started - own_close, 2)
    found["lost"] = own_close > linger / 2
    return found


tries = 1
found = attempt()
while found["lost"] and tries < 5:
    tries += 1
    found = attempt()
found["tries"] = tries
print(json.dumps(found), flush=True)
