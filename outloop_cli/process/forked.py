"""CPU-bound work split over forked copies of this process, one job per core.

For checks that are pure computation over files (``outloop audit verify`` of a
large log): a forked child inherits everything the job needs (an open key, a
decoder), runs one job and hands back its pickled result over a pipe. No
program is executed and nothing outlives the call: every child is waited for
before it returns, whatever happens.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_forked(jobs: Sequence[Callable[[], T | None]]) -> list[T | None]:
    """Every job's result, in order: the first in this process, the others in forked children.

    A child whose job raises, or that dies, gives None for its job (the caller
    decides what an unknown result means); an exception of the first job is
    raised after every child has been waited for.
    """
    children: list[tuple[int, int]] = []
    try:
        for job in jobs[1:]:
            children.append(_fork(job))
        results: list[T | None] = [jobs[0]()] if jobs else []
    finally:
        collected = [_collect(pid, fd) for pid, fd in children]
    return [*results, *collected]  # type: ignore[list-item]


def _fork(job: Callable[[], T]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the job, hand back its result, never return
        code = 1
        try:
            os.close(read_fd)
            payload = pickle.dumps(job(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            # no atexit handlers, no buffers of the parent's flushed twice
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _collect(pid: int, fd: int) -> object | None:
    with os.fdopen(fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not payload:
        return None
    result: object = pickle.loads(payload)
    return result
