"""A child of its own kernel session keyring: what the runner's session holds stays out.

Every process inherits its parent's session keyring, through ``fork`` and
``exec``, and through bubblewrap's namespaces too: a key the user's login (or
a CI step's ``keyctl``) put there can be requested and read by anything the
runner starts (``keyctl request user NAME`` then ``keyctl print``). A
sandboxed child therefore joins a new anonymous session keyring before it
execs bubblewrap, as ``keyctl session -`` does: ``KEYCTL_JOIN_SESSION_KEYRING``
with no name. The user keyring is the user namespace's own inside the sandbox.

The join happens in one thread of the runner that does nothing but start
such children (``popen_in_fresh_keyring``), right before each start: a
session keyring belongs to a thread's credentials, not to the process, so
the runner's other threads keep the user's keyring, and the child, copied
from that thread, starts in the new one. Joining in the child instead (a
``preexec_fn``) would make Python fork the whole process rather than
``vfork``: about 3 ms a start at a runner's size against 0.1 ms, twice an
iteration.
"""

from __future__ import annotations

import errno
import functools
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable

from outloop_cli.errors import CouldNotRun

# the keyctl system call's number per machine (asm/unistd.h)
_SYS_KEYCTL = {
    "x86_64": 250,
    "amd64": 250,
    "aarch64": 219,
    "arm64": 219,
    "riscv64": 219,
    "loongarch64": 219,
    "i386": 288,
    "i686": 288,
    "armv7l": 311,
    "armv6l": 311,
    "ppc64le": 310,
    "ppc64": 310,
    "s390x": 280,
}
_KEYCTL_JOIN_SESSION_KEYRING = 1


@functools.cache
def joiner() -> Callable[[], None]:
    """A function that joins the calling thread to a new anonymous session keyring, or raises."""
    # imported here: every command imports the process seam, few start a sandbox
    import ctypes

    machine = os.uname().machine
    number = _SYS_KEYCTL.get(machine)
    if number is None:
        raise CouldNotRun(
            f"cannot give the sandbox a keyring of its own on this machine ({machine})",
            hint="run with `sandbox: none` to go on without it (the kernel keyring stays visible)",
        )
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p]

    def join() -> None:
        if syscall(number, _KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            code = ctypes.get_errno()
            # a kernel built without keys has no keyring to leak
            if code != errno.ENOSYS:
                raise OSError(code, "could not join a new session keyring")

    return join


class _Start:
    """One start handed to the starting thread, and what came of it."""

    __slots__ = ("done", "error", "popen", "start")

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self.start = start
        self.done = threading.Event()
        self.popen: subprocess.Popen[bytes] | None = None
        self.error: BaseException | None = None


class _StartingThread:
    """The thread that joins a new session keyring before every start it makes."""

    def __init__(self, join: Callable[[], None]) -> None:
        self.pid = os.getpid()
        self._join = join
        self._starts: queue.SimpleQueue[_Start] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="outloop-fresh-keyring", daemon=True).start()

    def submit(self, start: _Start) -> None:
        self._starts.put(start)

    def _serve(self) -> None:
        while True:
            start = self._starts.get()
            try:
                try:
                    self._join()
                except OSError as exc:
                    raise CouldNotRun(
                        "cannot start the sandbox in a session keyring of its own",
                        hint="the kernel refused KEYCTL_JOIN_SESSION_KEYRING "
                        f"({exc.strerror}); `sandbox: none` goes on without",
                    ) from None
                start.popen = start.start()
            except BaseException as exc:  # handed to the caller, raised there
                start.error = exc
            finally:
                start.done.set()


_starting_lock = threading.Lock()
_starting: _StartingThread | None = None


def _starting_thread() -> _StartingThread:
    global _starting
    join = joiner()  # a machine without the call refuses here, in the caller
    with _starting_lock:
        # a forked copy of this process has the object but not its thread
        if _starting is None or _starting.pid != os.getpid():
            _starting = _StartingThread(join)
        return _starting


def popen_in_fresh_keyring(
    start: Callable[[], subprocess.Popen[bytes]],
) -> subprocess.Popen[bytes]:
    """What ``start`` started (a ``Popen`` of a new session), in a new session keyring of its own.

    ``start`` runs on the starting thread; its exceptions are raised here. An
    interrupt while it runs lets the start finish, kills what it started and
    is raised then, so nothing runs that nobody supervises.
    """
    job = _Start(start)
    _starting_thread().submit(job)
    try:
        job.done.wait()
    except BaseException:
        job.done.wait()
        if job.popen is not None:
            _kill(job.popen)
        raise
    if job.error is not None:
        raise job.error
    assert job.popen is not None
    return job.popen


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        # started in a session of its own: its group is its tree's start
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
