"""Attacker agent: holds open connections to the proxy until the runner has no descriptors left.

Every connection the broker accepts is a file descriptor of the runner's,
which its audit log, its records and its git need too. The agent raises its
own descriptor limit (the hard limit allows it), opens COUNT connections to
the proxy's port and holds them, then asks for a real route on the first one,
which the broker took before any other. Prints one JSON line: how many the
broker turned away (503 and closed), and the status of the real request.

Arguments: the base-URL variable, COUNT.
"""

import json
import os
import resource
import socket
import sys
import time
import urllib.parse

parts = urllib.parse.urlsplit(os.environ[sys.argv[1]])
count = int(sys.argv[2])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
wanted = count + 100
resource.setrlimit(
    resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
)
found: dict[str, object] = {}
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection(("127.0.0.1", parts.port), timeout=5))
    except OSError as exc:
        found["connect_error"] = str(exc)
        break
found["opened"] = len(held)
time.sleep(1.0)
busy = 0
for conn in held[1:]:
    conn.setblocking(False)
    try:
        if conn.recv(200).startswith(b"HTTP/1.1 503"):
            busy += 1
    except BlockingIOError:
        pass
found["busy"] = busy
first = held[0]
first.settimeout(20)
status = ""
try:
    request = f"GET {parts.path}/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    first.sendall(request.encode())
    answer = b""
    while b"\r\n" not in answer:
        more = first.recv(4096)
        if not more:
            break
        answer += more
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
except OSError as exc:
    status = f"error: {exc}"
found["status"] = status
for conn in held:
    conn.close()
print(json.dumps(found), flush=True)
