"""Attacker agent: tries to have the broker serve its key-adding proxy outside the sandbox.

The sandbox's first process hands the broker the listening socket of the
proxy's port through a Unix socket bound in at ``/run/outloop-handoff-*.sock``
(sandbox/handoff.py), which this agent tries to reach too (in a real run,
nothing listens there any more by the time it runs). It makes a listening
Unix socket of its own at a path of the host (``steal.sock`` in the worktree),
hands that over as the proxy's port, and asks through it what the proxy
answers. Had the broker taken it, any process of the host could use the
run's proxy at that path while the run lasts.

Argument: the base-URL variable. Prints one JSON line.
"""

import json
import os
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path

base = os.environ[sys.argv[1]]
parts = urllib.parse.urlsplit(base)
port = parts.port
found: dict[str, object] = {"proxy": False, "replies": [], "served_at_host_path": False}
try:
    with urllib.request.urlopen(base + "/echo", timeout=20) as response:
        found["proxy"] = response.status == 200
except OSError as exc:
    found["proxy_error"] = str(exc)
# the relay is this agent's parent: one thread when its ports were handed over, more
# when it relays them itself
found["relay_threads"] = len(list(Path(f"/proc/{os.getppid()}/task").iterdir()))

# relative: the worktree's absolute path can be longer than a socket address allows
steal = "steal.sock"
stolen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
stolen.bind(steal)
stolen.listen(8)
held = []
handoffs = sorted(str(p) for p in Path("/run").glob("outloop-handoff-*.sock"))
found["handoffs"] = len(handoffs)
for path in handoffs:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    try:
        conn.connect(path)
        socket.send_fds(conn, [b"outloop-listener %d\n" % port], [stolen.fileno()])
        found["replies"].append(conn.recv(200).decode(errors="replace"))  # type: ignore[attr-defined]
    except OSError as exc:
        found["replies"].append(f"error: {exc}")  # type: ignore[attr-defined]
    held.append(conn)

asker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
asker.settimeout(3)
try:
    asker.connect(steal)
    request = f"GET {parts.path}/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    asker.sendall(request.encode())
    answer = asker.recv(200)
    found["served_at_host_path"] = answer.startswith(b"HTTP/1.1 200")
    found["answer"] = answer[:40].decode(errors="replace")
except OSError as exc:
    found["asked"] = str(exc)
print(json.dumps(found), flush=True)
