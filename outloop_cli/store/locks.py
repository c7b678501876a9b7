"""Run liveness: the run lock and the loop lock, and what a record's state really is.

Whether a run is alive is answered by the kernel, not by the record: the
runner holds an exclusive ``flock`` on ``<run dir>/lock`` for the run's whole
life. The kernel drops it when the process dies, however it dies (SIGKILL,
OOM, power loss of a local disk), so a record that still says ``running``
while nobody holds its lock belongs to a crashed run. A pid in a file would
not do: pids are reused, and a live stranger would keep a dead run "running".
The pid and host written into the lock file are only for messages.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.paths import runs_root
from outloop_cli.process.proc import read_stat, started_at
from outloop_cli.store.records import RunRecord, RunState
from outloop_cli.store.runs import RunPaths

# A reader probing a lock holds it (shared) for a few microseconds; a runner
# that finds the lock busy retries this long before calling it taken.
_ACQUIRE_GRACE = 0.3
_ACQUIRE_RETRY = 0.02


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or last held) a lock, as written into the lock file; for messages only."""

    pid: int | None
    host: str | None
    run_id: str | None = None
    since: str | None = None

    def describe(self) -> str:
        if self.pid is None:
            return "pid unknown"
        if self.host and self.host != _hostname():
            return f"pid {self.pid} on {self.host}"
        return f"pid {self.pid}"


def _hostname() -> str:
    # what socket.gethostname() answers, without importing socket on status's start-up path
    return os.uname().nodename


def _owner_now(run_id: str | None) -> LockOwner:
    return LockOwner(
        pid=os.getpid(),
        host=_hostname(),
        run_id=run_id,
        since=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def read_lock_owner(path: Path) -> LockOwner | None:
    """The owner written into a lock file, or None when there is none to read."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return LockOwner(
        pid=pid if isinstance(pid, int) else None,
        host=data.get("host") if isinstance(data.get("host"), str) else None,
        run_id=data.get("run") if isinstance(data.get("run"), str) else None,
        since=data.get("since") if isinstance(data.get("since"), str) else None,
    )


def _try_acquire(path: Path, owner: LockOwner, grace: float = _ACQUIRE_GRACE) -> int | None:
    """Take an exclusive flock on ``path`` and write ``owner`` into it; None if it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_CLOEXEC: an agent must never inherit the lock, or a dead runner would look alive
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + grace
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(_ACQUIRE_RETRY)
    data = json.dumps(
        {"pid": owner.pid, "host": owner.host, "run": owner.run_id, "since": owner.since}
    ).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data + b"\n", 0)
    return fd


def _release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_held(path: Path) -> bool | None:
    """Is someone holding ``path``'s lock? None when the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        # shared, so that two readers probing at once do not see each other as the runner
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False


@contextmanager
def run_lock(paths: RunPaths, *, grace: float = _ACQUIRE_GRACE) -> Iterator[LockOwner]:
    """Hold the run's lock for the ``with`` block: the run is "running" exactly while it is held.

    Raises ``CouldNotRun`` naming the holder when another process holds it.
    ``outloop clean`` takes it too, so a worktree is never removed under a live run,
    and so does a new run taking a finished run's worktree over (``grace=0``: a
    held lock there means "take another one", not "wait").
    """
    owner = _owner_now(paths.run_id)
    fd = _try_acquire(paths.lock, owner, grace)
    if fd is None:
        holder = read_lock_owner(paths.lock)
        described = holder.describe() if holder else "pid unknown"
        raise CouldNotRun(
            f"run {paths.run_id} is already running ({described})",
            hint=f"watch it with `outloop status`, or stop it with `outloop stop {paths.run_id}`",
        )
    try:
        yield owner
    finally:
        _release(fd)


def loop_lock_path(common_dir: Path, loop: str) -> Path:
    # loop names are file stems; keep the lock's name to a safe alphabet all the same
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", loop)
    return runs_root(common_dir).parent / "locks" / f"loop-{safe}.lock"


@contextmanager
def loop_lock(common_dir: Path, loop: str, *, run_id: str | None = None) -> Iterator[LockOwner]:
    """One run per (repository, loop) at a time; ``--parallel`` runs skip this lock."""
    path = loop_lock_path(common_dir, loop)
    owner = _owner_now(run_id)
    fd = _try_acquire(path, owner)
    if fd is None:
        holder = read_lock_owner(path)
        which = f"run {holder.run_id}, " if holder and holder.run_id else ""
        described = holder.describe() if holder else "pid unknown"
        stop = f"`outloop stop {holder.run_id}`" if holder and holder.run_id else "`outloop stop`"
        raise CouldNotRun(
            f"loop `{loop}` is already running in this repository ({which}{described})",
            hint=f"wait for it, stop it with {stop}, or run another one beside it with --parallel",
        )
    try:
        yield owner
    finally:
        _release(fd)


def loop_running(common_dir: Path, loop: str) -> LockOwner | None:
    """Who holds the loop lock of ``loop`` right now (None: nobody does)."""
    path = loop_lock_path(common_dir, loop)
    if not _lock_held(path):
        return None
    return read_lock_owner(path) or LockOwner(pid=None, host=None)


def is_running(paths: RunPaths) -> bool:
    """Is a live process holding this run? Decided by the lock, which dies with its holder."""
    held = _lock_held(paths.lock)
    if held is not None:
        return held
    return _legacy_alive(paths)


def running_owner(paths: RunPaths) -> LockOwner | None:
    """The process running this run (for ``outloop stop``), or None when it is not running."""
    if not is_running(paths):
        return None
    owner = read_lock_owner(paths.lock)
    if owner is not None:
        return owner
    try:
        data = json.loads(paths.run_json.read_text())
    except (OSError, ValueError):
        return LockOwner(pid=None, host=None, run_id=paths.run_id)
    return LockOwner(pid=data.get("pid"), host=data.get("host"), run_id=paths.run_id)


def effective_state(record: RunRecord, paths: RunPaths) -> RunState:
    """The record's state, except that a live record nobody holds is a crashed run."""
    if record.state.live and not is_running(paths):
        return RunState.CRASHED
    return record.state


def _legacy_alive(paths: RunPaths) -> bool:
    """For a record without a lock file: its pid, checked against pid reuse by start time."""
    try:
        data = json.loads(paths.run_json.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("state") not in (
        RunState.RUNNING.value,
        RunState.WAITING_APPROVAL.value,
    ):
        return False
    pid = data.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    host = data.get("host")
    if isinstance(host, str) and host != _hostname():
        # another machine's process: we cannot look, so we do not call it dead
        return True
    if not _pid_alive(pid):
        return False
    started = started_at(pid)
    record_start = _parse_time(data.get("started_at"))
    # the runner starts before it writes its record; a process younger than the
    # record is a stranger that was given the dead runner's pid
    return started is None or record_start is None or started <= record_start + 2.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    info = read_stat(pid)
    if info is None:
        return True  # no /proc to look at: kill(0) is all we know
    # a zombie has exited; only its parent's bookkeeping is left
    return info.state != "Z"


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
