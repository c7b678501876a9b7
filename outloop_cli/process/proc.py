"""The one reader of ``/proc``: what the kernel says about the processes on this machine.

Supervision walks process trees with it, a resume finds a crashed run's
processes by their environment with it, and the run store checks a legacy
record's pid with it. Everything here is Linux-only and answers "cannot
tell" (``None``, or nothing found) elsewhere, so callers fall back to what
they can do without it.

A pid alone does not name a process: pids are reused. Where a process must
be recognised again later, callers keep its pid together with its start
time in clock ticks (``ProcInfo.start_ticks``), which a new process under
the same pid cannot share.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

_PROC = Path("/proc")
# include/linux/sched.h
_PF_EXITING = 0x00000004


@dataclass(frozen=True)
class ProcInfo:
    """The fields of ``/proc/<pid>/stat`` that supervision needs."""

    ppid: int
    pgrp: int
    # the main thread's state
    state: str
    # when the process started, in clock ticks after boot
    start_ticks: int
    # the main thread has begun to exit (PF_EXITING in the stat line's flags)
    exiting: bool = False
    # the main thread is a zombie but others still run: it called pthread_exit, and the
    # process lives on in its other threads, which stat's state does not show
    threads_running: bool = False

    @property
    def alive(self) -> bool:
        """Still running: a zombie has exited, only its parent's bookkeeping is left."""
        return self.threads_running or self.state not in _DEAD


_DEAD = ("Z", "X", "x")


@functools.cache
def have_proc() -> bool:
    """Whether this machine has a Linux ``/proc`` to read."""
    return sys.platform.startswith("linux") and (_PROC / "self" / "stat").is_file()


def read_stat(pid: int | str) -> ProcInfo | None:
    """``pid``'s stat line, or None when it has exited (or there is no /proc)."""
    info = _stat_at(f"/proc/{pid}/stat")
    if info is not None and info.state in _DEAD and _other_threads_run(pid):
        return replace(info, threads_running=True)
    return info


def _stat_at(path: str) -> ProcInfo | None:
    # os.open/os.read: half the cost of pathlib, and whole-system scans add up
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # exited while we looked
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and ")"
    fields = raw[raw.rindex(b")") + 2 :].split()
    return ProcInfo(
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        state=fields[0].decode(),
        # field 22 of stat; fields[0] is field 3
        start_ticks=int(fields[19]),
        # field 9, the kernel's task flags
        exiting=bool(int(fields[6]) & _PF_EXITING),
    )


def _other_threads_run(pid: int | str) -> bool:
    """Whether a thread of ``pid`` other than its main thread is still running."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")  # noqa: PTH208  # hot path
    except OSError:
        return False
    for tid in threads:
        if tid != str(pid):
            thread = _stat_at(f"/proc/{pid}/task/{tid}/stat")
            if thread is not None and thread.state not in _DEAD:
                return True
    return False


def leaving_for_good(pid: int) -> bool:
    """Whether ``pid`` can never run code of its own again and leaves nothing behind.

    True when every one of its threads has begun to exit (PF_EXITING: the kernel
    sets it in ``do_exit`` after cancelling the process's io_uring work, and a task
    never returns to user space from there) and none of them has a child. Such a
    process only waits for the kernel to finish tearing it down, which for a
    sandbox's init (the mounts and namespaces it held) goes on for milliseconds
    after bubblewrap itself has exited. False when it cannot be told.
    """
    try:
        threads = os.listdir(f"/proc/{pid}/task")  # noqa: PTH208  # hot path
    except OSError:
        return False
    if not threads:
        return False
    for tid in threads:
        thread = _stat_at(f"/proc/{pid}/task/{tid}/stat")
        if thread is None:
            continue  # this thread is gone already
        if thread.state not in _DEAD and not thread.exiting:
            return False
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
        except FileNotFoundError:
            continue  # this thread is gone already
        except OSError:
            return False
        try:
            if os.read(fd, 64).strip():
                return False
        except OSError:
            return False
        finally:
            os.close(fd)
    return True


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot: with the pid, it names one process."""
    info = read_stat(pid)
    return None if info is None else info.start_ticks


def started_at(pid: int) -> float | None:
    """When ``pid`` started, as a Unix time; None where we cannot tell."""
    info = read_stat(pid)
    if info is None:
        return None
    boot = _boot_time()
    if boot is None:
        return None
    return boot + info.start_ticks / os.sysconf("SC_CLK_TCK")


def _boot_time() -> float | None:
    try:
        lines = (_PROC / "stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("btime "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def process_table() -> dict[int, ProcInfo] | None:
    """Every process on the system, or None where there is no Linux /proc."""
    if not have_proc():
        return None
    table: dict[int, ProcInfo] = {}
    for name in os.listdir(_PROC):  # noqa: PTH208  # hot path: no Path per entry
        if name.isdigit():
            info = read_stat(name)
            if info is not None:
                table[int(name)] = info
    return table


def own_children() -> dict[int, ProcInfo] | None:
    """This process's children (its threads' ``task/*/children``), or None where unlisted.

    A few reads instead of one per process on the machine, so it can run
    after every child. The kernel warns the list may miss a child that is
    being reparented during the read: fine for reaping zombies (a missed one
    is reaped next time), never the last word on whether a daemon is left.
    """
    if not have_proc():
        return None
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")  # noqa: PTH208  # hot path
    except OSError:
        return None
    listed = False
    for tid in tasks:
        try:
            fd = os.open(f"/proc/self/task/{tid}/children", os.O_RDONLY)
        except FileNotFoundError:
            continue  # the thread ended, or a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            return None
        listed = True
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        pids.update(int(word) for word in b"".join(chunks).split())
    if not listed:
        return None
    table: dict[int, ProcInfo] = {}
    for pid in pids:
        info = read_stat(pid)
        if info is not None:
            table[pid] = info
    return table


def descendants(table: Mapping[int, ProcInfo], roots: Iterable[int]) -> list[int]:
    """Every process below ``roots`` in ``table`` (the roots themselves left out)."""
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    found: list[int] = []
    stack = list(roots)
    seen = set(stack)  # a snapshot taken during pid reuse could hold a cycle
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    return found


def pipe_holders(inodes: set[int]) -> list[int]:
    """Processes other than us with one of these pipes open (Linux only)."""
    if not have_proc() or not inodes:
        return []
    wanted = {f"pipe:[{inode}]" for inode in inodes}
    holders: list[int] = []
    for entry in _other_processes():
        # every thread: one may hold a file table of its own (unshare(CLONE_FILES))
        for view in _views(entry):
            try:
                fds = list((view / "fd").iterdir())
            except OSError:
                continue  # exited, or not ours to look at
            if any(_link(fd) in wanted for fd in fds):
                holders.append(int(entry.name))
                break
    return holders


def processes_with_env(name: str, value: str) -> list[int]:
    """Processes other than us started with ``name=value`` in their environment, sorted.

    This is the environment a process was started with (children inherit
    it), which it cannot take back by changing its own variables later.
    Only processes of our own user can be read.
    """
    if not have_proc():
        return []
    entry_wanted = f"{name}={value}".encode()
    found: list[int] = []
    for entry in _other_processes():
        for view in _views(entry):
            try:
                environ = (view / "environ").read_bytes()
            except OSError:
                continue  # exited, or not ours to look at
            if environ:
                if entry_wanted in environ.split(b"\0"):
                    found.append(int(entry.name))
                break
    return sorted(found)


def processes_in(directory: Path) -> list[int] | None:
    """Processes other than us whose working directory is ``directory`` or below it, sorted.

    A shell a user left in a finished run's worktree, say. None where there is
    no /proc to tell; only processes of our own user can be read.
    """
    if not have_proc():
        return None
    inside = str(directory.resolve())
    found: list[int] = []
    for entry in _other_processes():
        # every thread: one may have a working directory of its own (unshare(CLONE_FS))
        for view in _views(entry):
            cwd = _link(view / "cwd")
            if cwd is not None and (cwd == inside or cwd.startswith(inside.rstrip("/") + "/")):
                found.append(int(entry.name))
                break
    return sorted(found)


def umask() -> int | None:
    """This process's umask, read without changing it (``os.umask`` would, for every thread)."""
    if not have_proc():
        return None
    try:
        lines = (_PROC / "self" / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Umask:"):
            try:
                return int(line.split()[1], 8)
            except (IndexError, ValueError):
                return None
    return None


def _other_processes() -> Iterator[Path]:
    me = os.getpid()
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            yield entry


def _views(entry: Path) -> Iterator[Path]:
    """Where to read a process's environment, open files and working directory.

    ``/proc/<pid>`` shows them through the main thread, which shows nothing
    once it has exited (``pthread_exit``) while other threads run on, and a
    thread may hold files or a working directory of its own: so each of the
    others too (``task/<tid>``).
    """
    yield entry
    try:
        tids = os.listdir(entry / "task")  # noqa: PTH208  # hot path
    except OSError:
        return
    for tid in tids:
        if tid != entry.name:
            yield entry / "task" / tid


def _link(path: Path) -> str | None:
    try:
        return str(path.readlink())
    except OSError:
        return None
