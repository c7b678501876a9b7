"""Test agent: tries to leave its worktree's view of the file system, and says what it reached.

Argument: a JSON plan, e.g.
``{"read": [PATH], "write": [PATH], "symlink": [PATH], "hardlink": [PATH], "dotdot": [PATH],
"list": [DIR], "access_w": [PATH], "runner": CANARY, "keyring": NAME}``.
Every attempt is reported in one JSON line on stdout (the agent's log):

* ``read``: the text of each file, or null;
* ``write``: whether a file could be created there;
* ``symlink``/``hardlink``/``dotdot``: the text of each file reached through a link
  planted in the worktree, or a relative path full of ``..``;
* ``list``: a directory's entries, or null;
* ``access_w``: whether the kernel would let it open each path for writing (asked with
  access(2) only: nothing is ever written there);
* ``runner``: whether any visible process's environ holds the canary (given reversed),
  and whether the memory of a process above it could be read;
* ``keyring``: the payload of a ``user`` key of that name, requested from the session
  keyring (via keyctl), or null.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

plan = json.loads(sys.argv[1])
found: dict[str, object] = {}


def read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


found["read"] = {p: read(p) for p in plan.get("read", [])}


def can_create(directory: str) -> bool:
    try:
        (Path(directory) / "written-by-the-agent").write_text("x\n")
        return True
    except OSError:
        return False


found["write"] = {p: can_create(p) for p in plan.get("write", [])}

links: dict[str, str | None] = {}
for n, target in enumerate(plan.get("symlink", [])):
    name = f"escape-symlink-{n}"
    try:
        Path(name).symlink_to(target)
        links[target] = read(name)
    except OSError:
        links[target] = None
found["symlink"] = links

hard: dict[str, str | None] = {}
for n, target in enumerate(plan.get("hardlink", [])):
    name = f"escape-hardlink-{n}"
    try:
        os.link(target, name)
        hard[target] = read(name)
    except OSError:
        hard[target] = None
found["hardlink"] = hard

found["dotdot"] = {p: read(os.path.relpath(p, Path.cwd())) for p in plan.get("dotdot", [])}


def listing(directory: str) -> list[str] | None:
    try:
        return sorted(p.name for p in Path(directory).iterdir())
    except OSError:
        return None


found["list"] = {p: listing(p) for p in plan.get("list", [])}
found["access_w"] = {p: os.access(p, os.W_OK) for p in plan.get("access_w", [])}

if "runner" in plan:
    canary = plan["runner"][::-1].encode()
    leaks = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if canary in (proc / "environ").read_bytes():
                    leaks.append(proc.name)
            except OSError:
                pass
    found["environ_leaks"] = leaks
    # the memory of the processes above this one: outloop, the shell that started it
    mem_read = []
    pid = os.getppid()
    while pid > 1:
        try:
            maps = (Path("/proc") / str(pid) / "maps").read_text().splitlines()
            start = next(int(m.split("-")[0], 16) for m in maps if " r" in m[:30])
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.seek(start)
                if mem.read(64):
                    mem_read.append(pid)
        except (OSError, StopIteration, ValueError):
            pass
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found["mem_read"] = mem_read

if "keyring" in plan:
    payload = None
    asked = subprocess.run(
        ["keyctl", "request", "user", plan["keyring"]], capture_output=True, text=True
    )
    if asked.returncode == 0:
        piped = subprocess.run(["keyctl", "pipe", asked.stdout.strip()], capture_output=True)
        payload = piped.stdout.decode(errors="replace") if piped.returncode == 0 else None
    found["keyring"] = payload

print(json.dumps(found), flush=True)
