"""Attacker agent: goes for its handoff socket by the path it has on the host.

The sandbox's first process is bubblewrap, and its command line, which names
the host path each handoff socket is bound from, is readable in
``/proc/1/cmdline``. This agent looks for that path where it can: in its view
of the file system (the broker's socket directory is in it, writable, when a
credential needs git's helper). Had it found the socket there, still
listening, it could hand the broker whatever it liked. It lists the
directory that path is in, as its view shows it, too.

Argument: the base-URL variable. Prints one JSON line.
"""

import json
import os
import socket
import sys
import urllib.parse
from pathlib import Path

port = urllib.parse.urlsplit(os.environ[sys.argv[1]]).port or 0
argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
sources = [
    argv[i - 1].decode()
    for i, word in enumerate(argv)
    if word.startswith(b"/run/outloop-handoff-") and i > 1 and argv[i - 2] == b"--bind-try"
]
found: dict[str, object] = {"sources": len(sources), "replies": []}
broker = os.environ.get("OUTLOOP_BROKER_SOCKET")
if broker:
    found["broker_dir"] = sorted(p.name for p in Path(broker).parent.iterdir())
listings: list[object] = []
found["handoff_dirs"] = listings
for source in sources:
    try:
        listings.append(sorted(p.name for p in Path(source).parent.iterdir()))
    except OSError as exc:
        listings.append(f"error: {type(exc).__name__}")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    try:
        conn.connect(source)
        conn.sendall(b"outloop-listener %d\n" % port)
        found["replies"].append(conn.recv(200).decode(errors="replace"))  # type: ignore[attr-defined]
    except OSError as exc:
        found["replies"].append(f"error: {type(exc).__name__}")  # type: ignore[attr-defined]
    finally:
        conn.close()
print(json.dumps(found), flush=True)
