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

from outloop_cli.process.proc import processes_with_env, read_stat

_RUN_VARIABLE = "OUTLOOP_RUN"


def leftover_processes(run_id: str) -> list[int]:
    """Pids (other than ours) that belong to the run, sorted."""
    return processes_with_env(_RUN_VARIABLE, run_id)


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
    info = read_stat(pid)
    return info is not None and info.state != "Z"
