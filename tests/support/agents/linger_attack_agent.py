"""Attacker agent: hands the broker a socket whose close() waits, to stall the broker's thread.

A connected TCP socket with data its peer never reads, set to linger for
LINGER seconds: whoever closes its last reference waits that long in
``close()``. The agent hands it over through the handoff socket (the broker
refuses it, and so closes it), closes its own copy, and times the broker's
answer and one request through the proxy right after. Had the broker's event
loop been held, every request of the run would wait with it.

Arguments: the base-URL variable, LINGER (seconds). Prints one JSON line.
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
port = urllib.parse.urlsplit(base).port
server = socket.create_server(("127.0.0.1", 0))
stuck = socket.create_connection(server.getsockname())
peer, _ = server.accept()  # kept, and never read
stuck.setblocking(False)
try:
    while True:
        stuck.send(b"x" * 65536)
except BlockingIOError:
    pass
stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))

found: dict[str, object] = {}
[handoff] = sorted(str(p) for p in Path("/run").glob("outloop-handoff-*.sock"))
started = time.monotonic()
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
    conn.settimeout(60)
    conn.connect(handoff)
    socket.send_fds(conn, [b"outloop-listener %d\n" % port], [stuck.fileno()])
    stuck.close()  # timed from before the send: whichever copy closes last would wait
    found["reply"] = conn.recv(200).decode(errors="replace")
with urllib.request.urlopen(base + "/echo", timeout=60) as response:
    found["status"] = response.status
found["seconds"] = round(time.monotonic() - started, 2)
print(json.dumps(found), flush=True)
