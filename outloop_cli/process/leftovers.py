"""Processes a crashed run left behind.

Agents run in their own session, so a runner killed with SIGKILL cannot take
them down with it: they go on editing the worktree. Before a resume touches
that worktree, every process still carrying the run's ``OUTLOOP_RUN``
variable (every agent and goal process gets it, and children inherit it) is
killed. A process that merely works inside the worktree is not: that may be
the user's own shell, looking at what the run did.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_PROC = Path("/proc")


def _belongs(pid_dir: Path, marker: bytes) -> bool:
    try:
        environ = (pid_dir / "environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


def leftover_processes(run_id: str) -> list[int]:
    """Pids (other than ours) that belong to the run, found through /proc."""
    marker = f"OUTLOOP_RUN={run_id}".encode()
    me = os.getpid()
    found = []
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if _belongs(entry, marker):
            found.append(int(entry.name))
    return sorted(found)


def kill_leftovers(run_id: str, *, wait: float = 5.0) -> list[int]:
    """SIGKILL the run's leftover processes and wait until they are gone."""
    pids = leftover_processes(run_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.02)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
