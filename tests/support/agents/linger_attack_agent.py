"""Attacker agent: sends the broker a socket whose close() waits, to stall the broker's thread.

A connected TCP socket with data its peer never reads, set to linger for
LINGER seconds: whoever closes its last reference waits that long in
``close()``. The agent sends it to a Unix socket of the broker's, closes its
own copies, and times one request through the proxy right after. Had the
broker's event loop been held, every request of the run would wait with it.

MODE, where it goes and how:

- ``direct``: handed over through the handoff socket (refused: not listening;
  in a real run nothing listens there by the time the agent runs:
  ``unreachable``);
- ``nested``: the same, but what is handed over is one end of a socketpair
  with the lingering socket queued inside it (refused: not TCP); the broker's
  last close of that end releases what it holds;
- ``proxy``: with a request, to the access proxy's Unix socket (bound in for
  the relay's fallback), whose reader does not take descriptors;
- ``broker``: with a request, to the broker's own socket (git's credential
  helper).

A socket that refuses descriptors fails the send with EPERM: ``refused``.
Whoever lets go last waits, so an attempt where the agent's own close() was
the one that waited (the broker let go first) is lost and tried again, up to
five times; ``seconds`` leaves out its own close.

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
if mode in ("direct", "nested"):
    [path] = sorted(str(p) for p in Path("/run").glob("outloop-handoff-*.sock"))
    message = b"outloop-listener %d\n" % port
elif mode == "proxy":
    # the access proxy comes first among the sandbox's ways out
    path = sorted(str(p) for p in Path("/run").glob("outloop-relay-*.sock"))[0]
    route = urllib.parse.urlsplit(base).path
    message = b"GET %s/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % route.encode()
else:
    path = os.environ["OUTLOOP_BROKER_SOCKET"]
    message = b'{"op": "hello"}\n'
_NO_LINGER = struct.pack("ii", 0, 0)
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
    found: dict[str, object] = {"refused": False}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(60)
    try:
        conn.connect(path)
    except ConnectionRefusedError as refused:
        # nothing listens there (a handoff socket, once the relay has used it)
        sent.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
        sent.close()
        with urllib.request.urlopen(base + "/echo", timeout=60) as response:
            found["status"] = response.status
        found["unreachable"] = str(refused)
        found["lost"] = False
        return found
    kept.append(conn)
    started = time.monotonic()
    try:
        socket.send_fds(conn, [message], [sent.fileno()])
    except PermissionError:
        found["refused"] = True
        # nobody else holds it: let it go without the wait
        sent.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
    closing = time.monotonic()
    sent.close()
    own_close = time.monotonic() - closing
    if mode in ("direct", "nested"):
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
