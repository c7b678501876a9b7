"""The one place outloop starts processes: agents, goal commands, git.

Agents are untrusted: they fork, hang, flood their output and leave daemons
behind. So every child here

- runs in a new session, so the terminal's Ctrl-C reaches only outloop, which
  then decides what to kill (and kills it);
- gets exactly the environment the caller built, never ``os.environ`` by
  accident (that is where secrets live);
- is killed as a whole tree: its process group, plus every descendant that
  moved to a session of its own, SIGTERM first and SIGKILL after a grace;
- leaves nothing running behind it, even when it exits 0;
- streams its output to a log file, keeping only a bounded tail in memory, so
  a flood cannot grow outloop and a hang cannot hang outloop.

The process-tree walk reads ``/proc`` and is Linux-only; elsewhere we fall
back to the process group alone.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import select
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from outloop_cli.errors import CouldNotRun

__all__ = [
    "CommandTimedOut",
    "ProcessResult",
    "ProgramNotFound",
    "adopt_orphans",
    "run_captured",
    "run_streamed",
]

# How often the waiting thread looks at the clock, the cancel event and the
# idle timer. Exit itself is noticed at once where pidfds exist.
_POLL = 0.05
_CHUNK = 1 << 16
# Once the tree is dead, EOF should follow at once; if it doesn't, a
# descendant that escaped us still holds the pipe, and we stop reading.
_DRAIN = 0.5
# Hard cap on reading after we asked the pump to stop, for an escaped
# descendant that keeps the pipe full.
_DRAIN_CAP = 2.0
# SIGKILL cannot be refused, but delivery is asynchronous: wait this long for
# the tree to vanish so that "returned" means "gone".
_SETTLE = 2.0
# How often a running child's tree is scanned for descendants that left its
# process group (setsid), so they can be killed with it later. Scanning
# /proc costs a few milliseconds; children quicker than this cost nothing.
_SNAPSHOT_EVERY = 0.5
_CAPTURED_KILL_GRACE = 3.0


@dataclass(frozen=True)
class ProcessResult:
    """How a streamed process ended. Its output is in ``log_path``."""

    # the return code; negative means killed by that signal; None only when
    # the process was never started (cancelled before it began)
    exit_code: int | None
    duration: float
    timed_out: bool
    idle_timed_out: bool
    cancelled: bool
    # bytes written to the log (after ``transform``), not counting our markers
    output_bytes: int
    tail: str
    log_path: Path

    @property
    def killed(self) -> bool:
        return self.timed_out or self.idle_timed_out or self.cancelled

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.killed


class ProgramNotFound(CouldNotRun):
    """The program to run does not exist (not on PATH, or no such file)."""

    def __init__(self, program: str, *, search_path: str | None, cwd: Path) -> None:
        self.program = program
        self.search_path = search_path
        if search_path is None:
            message = f"`{program}` does not exist"
            hint = "check the path"
            if not Path(program).is_absolute():
                hint += f" (relative to the working directory {cwd})"
        elif not search_path:
            message = f"`{program}` was not found: the command's environment has no PATH"
            hint = "set PATH for the command, or give the program's full path"
        else:
            message = f"`{program}` was not found on PATH"
            hint = (
                f"install `{program}`, or add the directory that holds it to PATH, "
                f"or give its full path (searched: {search_path})"
            )
        super().__init__(message, hint=hint)


class CommandTimedOut(CouldNotRun):
    """A captured command ran past its timeout and was killed."""

    def __init__(self, argv: Sequence[str], timeout: float, stdout: bytes, stderr: bytes) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"`{' '.join(self.argv)}` did not finish within {_seconds(timeout)} and was killed"
        )


class _Stop(Enum):
    """Why we killed a process; the value is the log marker's wording."""

    TIMEOUT = "timeout"
    IDLE = "idle_timeout"
    CANCEL = "cancelled"
    PUMP_FAILED = "output handling failed"


def run_streamed(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    cancel: threading.Event | None = None,
    stdin_data: bytes | None = None,
    tail_bytes: int = 64 * 1024,
    kill_grace: float = 3.0,
    transform: Callable[[bytes], bytes] | None = None,
    on_output: Callable[[bytes], None] | None = None,
    append: bool = False,
) -> ProcessResult:
    """Run ``argv`` with stdout and stderr merged into ``log_path``.

    Kills the whole tree on ``timeout`` (seconds since start), ``idle_timeout``
    (seconds without output), ``cancel`` or Ctrl-C (re-raised after the kill),
    and kills whatever the process left running after it exits. ``transform``
    sees every chunk before it is logged, tailed or passed to ``on_output``;
    it must handle secrets split across chunk boundaries itself. ``on_output``
    runs on the reader thread and must be quick. An exception from either
    kills the process and is re-raised here.

    Raises ``ProgramNotFound`` or ``CouldNotRun`` when the program cannot start.
    """
    _check_positive("timeout", timeout)
    _check_positive("idle_timeout", idle_timeout)
    if kill_grace < 0:
        raise ValueError(f"kill_grace must be >= 0, not {kill_grace}")
    if tail_bytes < 0:
        raise ValueError(f"tail_bytes must be >= 0, not {tail_bytes}")
    if not argv:
        raise ValueError("argv must not be empty")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with io.FileIO(log_path, "a" if append else "w") as log:
        sink = _LogSink(log, tail_bytes=tail_bytes, transform=transform, on_output=on_output)
        if cancel is not None and cancel.is_set():
            sink.note("not started: cancelled")
            return sink.result(None, 0.0, log_path, stopped=_Stop.CANCEL)
        try:
            executable = _resolve(argv, env, cwd)
        except CouldNotRun as exc:
            # an empty log should say why it is empty
            sink.note(f"could not start: {exc.message}")
            raise
        out_r, out_w = os.pipe()
        try:
            child = _Child.start(
                argv,
                executable,
                cwd=cwd,
                env=env,
                stdin_data=stdin_data,
                stdout=out_w,
                stderr=out_w,
                untrusted=True,
            )
        except CouldNotRun as exc:
            os.close(out_r)
            sink.note(f"could not start: {exc.message}")
            raise
        finally:
            os.close(out_w)
        start = time.monotonic()
        stopped = child.supervise(
            {out_r: sink.write},
            timeout=timeout,
            idle_timeout=idle_timeout,
            last_output=lambda: sink.last_output,
            cancel=cancel,
            kill_grace=kill_grace,
            note=sink.note,
        )
        return sink.result(child.returncode, time.monotonic() - start, log_path, stopped=stopped)


def run_captured(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None = None,
    stdin_data: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a small command and return its stdout and stderr in memory.

    Same isolation and kill discipline as ``run_streamed``. Does not check the
    exit code. Raises ``CommandTimedOut`` (after killing the tree) when
    ``timeout`` passes, ``ProgramNotFound``/``CouldNotRun`` when it cannot start.
    """
    _check_positive("timeout", timeout)
    executable = _resolve(argv, env, cwd)
    stdout, stderr = bytearray(), bytearray()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        child = _Child.start(
            argv,
            executable,
            cwd=cwd,
            env=env,
            stdin_data=stdin_data,
            stdout=out_w,
            stderr=err_w,
            # small trusted tools (git): a daemon they start on purpose (auto gc) may live
            untrusted=False,
        )
    except CouldNotRun:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    stopped = child.supervise(
        {out_r: stdout.extend, err_r: stderr.extend},
        timeout=timeout,
        idle_timeout=None,
        last_output=None,
        cancel=None,
        kill_grace=_CAPTURED_KILL_GRACE,
        note=None,
    )
    if stopped is not None:
        assert timeout is not None  # the only way a captured command is stopped
        raise CommandTimedOut(argv, timeout, bytes(stdout), bytes(stderr))
    assert child.returncode is not None
    return subprocess.CompletedProcess(list(argv), child.returncode, bytes(stdout), bytes(stderr))


# --- starting -------------------------------------------------------------


def _resolve(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """The executable for ``argv[0]``, searched on the child's PATH, not ours."""
    if not argv:
        raise ValueError("argv must not be empty")
    program = argv[0]
    if not cwd.is_dir():
        raise CouldNotRun(f"cannot run `{program}`: working directory {cwd} does not exist")
    if "/" in program:
        return program
    # as execvp does when PATH is unset: never fall back to outloop's own PATH
    search_path = env.get("PATH", os.defpath)
    found = shutil.which(program, path=search_path)
    if found is not None:
        return found
    for directory in search_path.split(os.pathsep):
        candidate = Path(directory or ".") / program
        if candidate.is_file():
            raise CouldNotRun(
                f"`{candidate}` is not executable", hint=f"make it executable: chmod +x {candidate}"
            )
    raise ProgramNotFound(program, search_path=search_path, cwd=cwd)


def _popen(
    argv: Sequence[str],
    executable: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
) -> subprocess.Popen[bytes]:
    program = argv[0]
    try:
        return subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) == cwd:
            raise CouldNotRun(f"cannot run `{program}` in {cwd}: {exc.strerror}") from exc
        path = Path(executable) if Path(executable).is_absolute() else cwd / executable
        if isinstance(exc, FileNotFoundError):
            if path.is_file():
                # execve says ENOENT for a missing #! interpreter too
                raise CouldNotRun(
                    f"cannot run `{program}`: its interpreter was not found",
                    hint=f"check the #! line of {path}: {_first_line(path)}",
                ) from exc
            raise ProgramNotFound(program, search_path=None, cwd=cwd) from exc
        if isinstance(exc, PermissionError):
            raise CouldNotRun(
                f"cannot run `{program}`: permission denied",
                hint=f"make it executable (chmod +x {path}) and check its directory's permissions",
            ) from exc
        if exc.errno == errno.ENOEXEC:
            raise CouldNotRun(
                f"cannot run `{program}`: not a program this system can execute",
                hint=f"a script needs a #! line, and a binary must be built for this machine ({path})",
            ) from exc
        raise CouldNotRun(f"cannot run `{program}`: {exc.strerror or exc}") from exc


def _first_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.readline(200).decode("utf-8", "replace").rstrip()
    except OSError as exc:
        return f"(unreadable: {exc.strerror})"


# --- supervising ----------------------------------------------------------


class _Child:
    """A started child and the discipline for watching and killing its tree.

    The leader is never reaped until its tree has been dealt with: as a
    zombie it keeps its pid, which is also the group id, out of reuse, so
    ``killpg`` cannot hit a stranger.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], stdin: tuple[int, bytes] | None, *, untrusted: bool
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._stdin = stdin
        self._pidfd = _open_pidfd(proc.pid)
        # descendants outside the group, as (pid, start time) against pid reuse
        self._escaped: set[tuple[int, int]] = set()
        self._untrusted = untrusted
        self._released = False

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        executable: str,
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdin_data: bytes | None,
        stdout: int,
        stderr: int,
        untrusted: bool,
    ) -> _Child:
        """Start the child; ``untrusted`` children's orphans are swept (see ``adopt_orphans``)."""
        if stdin_data is None:
            stdin_r = os.open(os.devnull, os.O_RDONLY)
            stdin_w = None
        else:
            stdin_r, stdin_w = os.pipe()
        try:
            # a sweep must not see the new child between fork and registration
            with _orphanage.lock:
                proc = _popen(
                    argv, executable, cwd=cwd, env=env, stdin=stdin_r, stdout=stdout, stderr=stderr
                )
                _orphanage.register(proc.pid, untrusted=untrusted)
        except BaseException:
            if stdin_w is not None:
                os.close(stdin_w)
            raise
        finally:
            os.close(stdin_r)
        stdin = None if stdin_w is None else (stdin_w, stdin_data or b"")
        return cls(proc, stdin, untrusted=untrusted)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def supervise(
        self,
        outputs: Mapping[int, Callable[[bytes], object]],
        *,
        timeout: float | None,
        idle_timeout: float | None,
        last_output: Callable[[], float] | None,
        cancel: threading.Event | None,
        kill_grace: float,
        note: Callable[[str], None] | None,
    ) -> _Stop | None:
        """Pump the pipes, watch, kill if needed, reap; return why we killed, if we did."""
        say = note or _ignore
        pipes = {os.fstat(fd).st_ino for fd in outputs}
        pump = _Pump(outputs, self._stdin)
        try:
            pump.start()
            stopped = self._watch(pump, timeout, idle_timeout, last_output, cancel)
            if stopped is None:
                self._kill_leftovers(say)
            else:
                say(_kill_message(stopped, timeout, idle_timeout, pump.error))
                self._kill_tree(kill_grace, say)
        except BaseException as exc:
            # Ctrl-C (or a bug above): the tree must not outlive this call
            why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else repr(exc)
            try:
                say(f"killed: {why}")
                self._kill_tree(kill_grace, say)
            except KeyboardInterrupt:
                # a second Ctrl-C means "now": skip the grace
                self._kill_tree(0.0, say)
            raise
        finally:
            self._release(say)
            pump.join(_DRAIN)
            if pump.is_alive():
                self._kill_pipe_holders(pipes, say)
            pump.finish()
            self._close()
        if pump.error is not None:
            raise pump.error
        return stopped

    def _watch(
        self,
        pump: _Pump,
        timeout: float | None,
        idle_timeout: float | None,
        last_output: Callable[[], float] | None,
        cancel: threading.Event | None,
    ) -> _Stop | None:
        start = time.monotonic()
        next_snapshot = start + _SNAPSHOT_EVERY
        while not self._wait_exit(_POLL):
            now = time.monotonic()
            if now >= next_snapshot:
                # learn who escaped the group while their parents still
                # show where they came from
                self._snapshot_escaped()
                # on a machine with thousands of processes, scan less often:
                # the watching must not cost more than ~2% of a core
                scan = time.monotonic() - now
                next_snapshot = now + max(_SNAPSHOT_EVERY, 50 * scan)
            if pump.error is not None:
                return _Stop.PUMP_FAILED
            if cancel is not None and cancel.is_set():
                return _Stop.CANCEL
            if timeout is not None and now - start >= timeout:
                return _Stop.TIMEOUT
            if (
                idle_timeout is not None
                and last_output is not None
                and now - last_output() >= idle_timeout
            ):
                return _Stop.IDLE
        return None

    def _wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the leader to exit, without reaping it."""
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            return bool(poller.poll(timeout * 1000))
        if self._exited():
            return True
        time.sleep(timeout)
        return self._exited()

    def _exited(self) -> bool:
        if not hasattr(os, "waitid"):
            return self.proc.poll() is not None
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is not None
        except ChildProcessError:
            # already reaped: by Popen, or by someone else's waitpid(-1)
            return True

    def _kill_leftovers(self, say: Callable[[str], None]) -> None:
        """The leader exited on its own: kill what it left running, in its group or not."""
        if not self._escaped:
            # the common case (git, a well-behaved agent): an empty group and nothing
            # known to have left it, so a scan of /proc would find nothing to start from
            self.proc.wait()
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
        table = _proc_table()
        if table is not None:
            self._snapshot_escaped(table)
            left = self._alive_members(table)
            if not left:
                self.proc.wait()
                return
            say(f"killed {len(left)} process(es) the command left running after it exited")
        # without /proc we cannot see the group, so kill it blind; harmless if empty
        self._signal(signal.SIGKILL)
        self._settle()

    def _kill_tree(self, grace: float, say: Callable[[str], None]) -> None:
        """SIGTERM the tree, SIGKILL what is left after ``grace``, reap the leader."""
        # snapshot before signalling: once parents die, ppid chains are lost
        self._snapshot_escaped()
        self._signal(signal.SIGTERM)
        # a stopped process (Ctrl-Z, a debugger) only handles SIGTERM once continued
        self._signal(signal.SIGCONT)
        deadline = time.monotonic() + grace
        while self._alive() and time.monotonic() < deadline:
            time.sleep(_POLL / 2)
        self._snapshot_escaped()
        if self._alive():
            say(f"still running {_seconds(grace)} after SIGTERM: sent SIGKILL")
        # always: without /proc we cannot tell whether group members survived
        self._signal(signal.SIGKILL)
        self._settle()

    def _snapshot_escaped(self, table: Mapping[int, _ProcInfo] | None = None) -> None:
        """Remember every descendant of the group that moved to a group of its own."""
        if table is None:
            table = _proc_table()
            if table is None:
                return
        # from every member, not just the leader: a member whose parent died
        # was reparented away, but its own children still point at it
        roots = [pid for pid, info in table.items() if info.pgrp == self.pid]
        roots += [
            pid
            for pid, start in self._escaped
            if (info := table.get(pid)) is not None and info.starttime == start
        ]
        for pid in _descendants(table, roots):
            info = table[pid]
            if info.pgrp != self.pid:
                self._escaped.add((pid, info.starttime))

    def _kill_pipe_holders(self, pipes: set[int], say: Callable[[str], None]) -> None:
        """Kill whatever still holds our output pipes after the tree was dealt with.

        A double-forked daemon is reparented away before any snapshot can
        place it in the tree, but if it kept our stdout it inherited that
        from the tree, so holding the pipe is proof enough that it is ours.
        """
        holders = _pipe_holders(pipes)
        if not holders:
            return
        say(f"killed {len(holders)} process(es) that escaped the tree and kept its output open")
        targets = [(pid, _starttime(pid)) for pid in holders]
        for pid, _ in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        # as for the tree: "returned" means "gone"
        deadline = time.monotonic() + _SETTLE
        while time.monotonic() < deadline and any(
            (info := _read_stat(pid)) is not None and info.starttime == start and info.alive
            for pid, start in targets
        ):
            time.sleep(0.01)

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            # gone already, or a member we may not signal (setuid); nothing to do
            pass
        for pid, starttime in self._escaped:
            if _starttime(pid) != starttime:
                continue  # exited; the pid may belong to someone else now
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _alive(self) -> bool:
        """Whether anything we are killing still runs (zombies don't count)."""
        table = _proc_table()
        if table is None:
            return not self._exited()
        return bool(self._alive_members(table))

    def _alive_members(self, table: Mapping[int, _ProcInfo]) -> list[int]:
        members = [pid for pid, info in table.items() if info.pgrp == self.pid and info.alive]
        members += [
            pid
            for pid, start in self._escaped
            if (info := table.get(pid)) is not None and info.starttime == start and info.alive
        ]
        return members

    def _settle(self) -> None:
        deadline = time.monotonic() + _SETTLE
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        # the leader got SIGKILL or already exited, so this cannot hang on it
        self.proc.wait()

    def _release(self, say: Callable[[str], None]) -> None:
        """The tree is dealt with: forget the leader, and sweep orphans if it was the last."""
        if self._released or self.proc.returncode is None:
            # not reaped (a kill failed half-way): still ours, never an orphan
            return
        self._released = True
        swept = _orphanage.release(self.pid)
        if swept:
            say(f"killed {swept} orphaned process(es) that escaped the tree")

    def _close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _kill_message(
    stopped: _Stop, timeout: float | None, idle_timeout: float | None, error: BaseException | None
) -> str:
    if stopped is _Stop.TIMEOUT and timeout is not None:
        return f"killed: still running after {_seconds(timeout)} (timeout)"
    if stopped is _Stop.IDLE and idle_timeout is not None:
        return f"killed: no output for {_seconds(idle_timeout)} (idle_timeout)"
    if stopped is _Stop.PUMP_FAILED:
        return f"killed: {stopped.value}: {error!r}"
    return f"killed: {stopped.value}"


def _open_pidfd(pid: int) -> int | None:
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        # kernels before 5.3, or a seccomp profile that forbids it: poll instead
        return None
    return fd


# --- orphans --------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux only).

    A daemon that double-forks is reparented before any snapshot can place
    it in a tree, and once it has closed our pipes nothing ties it to the
    agent that started it. As a child subreaper (``prctl(2)``) we get such
    orphans instead of init, and kill the ones born while an agent or goal
    ran once no agent or goal is running any more; orphans of trusted
    commands (``run_captured``) are only reaped when they exit.

    Call it once, early, only in a process where this module starts every
    child (the ``outloop`` CLI): other children would be taken for
    orphans. Returns whether adoption is on.
    """
    if _orphanage.adopting:
        return True
    if not _have_proc():
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    _orphanage.adopting = True
    return True


class _Orphanage:
    """Our live children, and the sweeping of orphans that were adopted by us."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.adopting = False
        # children started here and not yet released; everything else whose
        # parent is us was adopted
        self._children: set[int] = set()
        # untrusted trees running now: leader pid -> its start time (clock ticks)
        self._untrusted: dict[int, int] = {}
        # earliest start of the untrusted trees that ended since the last sweep
        self._pending_since: int | None = None

    def register(self, pid: int, *, untrusted: bool) -> None:
        """Called with ``lock`` held, right after the fork."""
        self._children.add(pid)
        if untrusted and self.adopting:
            start = _starttime(pid)
            if start is not None:
                self._untrusted[pid] = start

    def release(self, pid: int) -> int:
        """A tree ended (its leader reaped); returns how many orphans were killed."""
        with self.lock:
            self._children.discard(pid)
            start = self._untrusted.pop(pid, None)
            if not self.adopting:
                return 0
            if start is not None:
                since = self._pending_since
                self._pending_since = start if since is None else min(since, start)
            killed = 0
            # while another agent or goal runs, a new orphan may be its own
            if not self._untrusted and self._pending_since is not None:
                killed = self._kill_orphans(self._pending_since)
                self._pending_since = None
            self._reap()
            return killed

    def _kill_orphans(self, since: int) -> int:
        table = _proc_table()
        if table is None:
            return 0
        me = os.getpid()
        orphans = [
            pid
            for pid, info in table.items()
            if info.ppid == me
            and pid not in self._children
            and info.alive
            and info.starttime >= since
        ]
        targets = [(pid, table[pid].starttime) for pid in [*orphans, *_descendants(table, orphans)]]
        for pid, _ in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + _SETTLE
        while time.monotonic() < deadline:
            # their children come to us as they die, and must be reaped too
            self._reap()
            if not any(
                (info := _read_stat(pid)) is not None and info.starttime == start and info.alive
                for pid, start in targets
            ):
                break
            time.sleep(0.01)
        return len(targets)

    def _reap(self) -> None:
        """Collect the exit status of adopted orphans that died, so no zombie stays."""
        table = _proc_table()
        if table is None:
            return
        me = os.getpid()
        for pid, info in table.items():
            if info.ppid == me and pid not in self._children and not info.alive:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


_orphanage = _Orphanage()


# --- moving bytes ---------------------------------------------------------


class _Pump(threading.Thread):
    """Feeds stdin and drains the output pipes on one thread until EOF or told to stop.

    Owns the parent's ends of the pipes and closes them. A failure here (a
    sink or transform raising, a full disk) is kept in ``error`` for the
    caller's thread to act on and re-raise.
    """

    def __init__(
        self, outputs: Mapping[int, Callable[[bytes], object]], stdin: tuple[int, bytes] | None
    ) -> None:
        super().__init__(name="outloop-pump", daemon=True)
        self._outputs = dict(outputs)
        self._stdin = stdin
        self._stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        fds = set(self._outputs)
        if self._stdin is not None:
            fds.add(self._stdin[0])
        try:
            self._loop(fds)
        except BaseException as exc:  # handed to the caller's thread, which re-raises it
            self.error = exc
        finally:
            for fd in fds:
                os.close(fd)

    def _loop(self, fds: set[int]) -> None:
        with selectors.DefaultSelector() as sel:
            for fd in self._outputs:
                sel.register(fd, selectors.EVENT_READ)
            pending = memoryview(b"")
            if self._stdin is not None:
                stdin_fd, data = self._stdin
                pending = memoryview(data)
                if pending:
                    os.set_blocking(stdin_fd, False)
                    sel.register(stdin_fd, selectors.EVENT_WRITE)
                else:
                    fds.discard(stdin_fd)
                    os.close(stdin_fd)
            cap: float | None = None
            while sel.get_map():
                if self._stopping.is_set() and cap is None:
                    cap = time.monotonic() + _DRAIN_CAP
                events = sel.select(0 if cap is not None else _POLL)
                if cap is not None and (not events or time.monotonic() > cap):
                    return
                for key, _ in events:
                    fd = key.fd
                    if fd in self._outputs:
                        chunk = os.read(fd, _CHUNK)
                        if chunk:
                            self._outputs[fd](chunk)
                            continue
                    else:
                        try:
                            written = os.write(fd, pending[:_CHUNK])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            written = len(pending)  # the child won't read the rest
                        pending = pending[written:]
                        if pending:
                            continue
                    sel.unregister(fd)
                    fds.discard(fd)
                    os.close(fd)

    def finish(self) -> None:
        """Wait briefly for EOF, then stop reading whatever still holds the pipes."""
        self.join(_DRAIN)
        self._stopping.set()
        self.join()


def _ignore(_: str) -> None:
    pass


class _LogSink:
    """Writes output to the log as it comes; keeps the count, the tail and the idle clock."""

    def __init__(
        self,
        log: io.FileIO,
        *,
        tail_bytes: int,
        transform: Callable[[bytes], bytes] | None,
        on_output: Callable[[bytes], None] | None,
    ) -> None:
        self._log = log
        self._tail_bytes = tail_bytes
        self._transform = transform
        self._on_output = on_output
        self._tail = bytearray()
        self._at_line_start = True
        # markers come from the waiting thread, output from the pump
        self._lock = threading.Lock()
        self.count = 0
        self.last_output = time.monotonic()

    def write(self, chunk: bytes) -> None:
        # raw output is activity even when the transform drops all of it
        self.last_output = time.monotonic()
        if self._transform is not None:
            chunk = self._transform(chunk)
        if not chunk:
            return
        with self._lock:
            # unbuffered: a user's `tail -f` sees each chunk as it arrives
            _write_all(self._log, chunk)
            self.count += len(chunk)
            self._at_line_start = chunk.endswith(b"\n")
            if self._tail_bytes:
                self._tail += chunk
                # trim in batches to keep appends amortised O(1)
                if len(self._tail) > 2 * self._tail_bytes:
                    del self._tail[: len(self._tail) - self._tail_bytes]
        if self._on_output is not None:
            self._on_output(chunk)

    def note(self, text: str) -> None:
        """Add an ``[outloop]`` line to the log so it explains itself."""
        with self._lock:
            prefix = "" if self._at_line_start else "\n"
            _write_all(self._log, f"{prefix}[outloop] {text}\n".encode())
            self._at_line_start = True

    def result(
        self, exit_code: int | None, duration: float, log_path: Path, *, stopped: _Stop | None
    ) -> ProcessResult:
        with self._lock:
            tail = bytes(self._tail[-self._tail_bytes :]) if self._tail_bytes else b""
        if self.count > len(tail):
            # cut from longer output: don't start on the broken end of a UTF-8 character
            tail = _skip_partial_char(tail)
        return ProcessResult(
            exit_code=exit_code,
            duration=duration,
            timed_out=stopped is _Stop.TIMEOUT,
            idle_timed_out=stopped is _Stop.IDLE,
            cancelled=stopped is _Stop.CANCEL,
            output_bytes=self.count,
            tail=tail.decode("utf-8", errors="replace"),
            log_path=log_path,
        )


def _skip_partial_char(data: bytes) -> bytes:
    start = 0
    # a UTF-8 character has at most three continuation bytes (10xxxxxx)
    while start < min(3, len(data)) and 0x80 <= data[start] < 0xC0:
        start += 1
    return data[start:]


def _write_all(f: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = f.write(view)
        view = view[written or 0 :]


# --- /proc ----------------------------------------------------------------


@dataclass(frozen=True)
class _ProcInfo:
    ppid: int
    pgrp: int
    state: str
    starttime: int

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X", "x")


@functools.cache
def _have_proc() -> bool:
    return sys.platform.startswith("linux") and Path("/proc/self/stat").is_file()


def _read_stat(pid: int | str) -> _ProcInfo | None:
    # os.open/os.read: half the cost of pathlib, and whole-system scans add up
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
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
    return _ProcInfo(
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        state=fields[0].decode(),
        starttime=int(fields[19]),
    )


def _proc_table() -> dict[int, _ProcInfo] | None:
    """Every process on the system, or None where there is no Linux /proc."""
    if not _have_proc():
        return None
    table: dict[int, _ProcInfo] = {}
    for name in os.listdir("/proc"):  # noqa: PTH208  # hot path: no Path per entry
        if name.isdigit():
            info = _read_stat(name)
            if info is not None:
                table[int(name)] = info
    return table


def _pipe_holders(inodes: set[int]) -> list[int]:
    """Processes other than us with one of these pipes open (Linux only)."""
    if not _have_proc() or not inodes:
        return []
    wanted = {f"pipe:[{inode}]" for inode in inodes}
    me = os.getpid()
    holders: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # exited, or not ours to look at
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target in wanted:
                holders.append(int(entry.name))
                break
    return holders


def _starttime(pid: int) -> int | None:
    info = _read_stat(pid)
    return None if info is None else info.starttime


def _descendants(table: Mapping[int, _ProcInfo], roots: Iterable[int]) -> list[int]:
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


# --- small things ---------------------------------------------------------


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be > 0 seconds, not {value}")


def _seconds(value: float) -> str:
    return f"{value:g}s"
