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

This module starts children and reports how they ended; watching and killing
a tree is ``supervise.py``, moving its bytes ``sinks.py``, and reading
``/proc`` (Linux only; elsewhere we fall back to the process group alone)
``proc.py``.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.sinks import LogSink
from outloop_cli.process.supervise import Child, Orphans, Stop

__all__ = [
    "CommandTimedOut",
    "ProcessResult",
    "ProgramNotFound",
    "run_captured",
    "run_streamed",
]

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
    sandboxed: bool = False,
) -> ProcessResult:
    """Run ``argv`` with stdout and stderr merged into ``log_path``.

    Kills the whole tree on ``timeout`` (seconds since start), ``idle_timeout``
    (seconds without output), ``cancel`` or Ctrl-C (re-raised after the kill),
    and kills whatever the process left running after it exits. ``transform``
    sees every chunk before it is logged, tailed or passed to ``on_output``;
    it must handle secrets split across chunk boundaries itself. ``on_output``
    runs on the reader thread and must be quick. An exception from either
    kills the process and is re-raised here. ``sandboxed`` says ``argv`` is a
    line of the run's sandbox (``sandbox/bwrap.py``): the child starts in a new
    session keyring of its own (``session_keyring.py``), and since its PID
    namespace ends with it (``--unshare-pid`` with ``--die-with-parent``),
    nothing it starts can outlive it and no sweep for orphans follows it
    (``Orphans.REAP``).

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
        sink = LogSink(log, tail_bytes=tail_bytes, transform=transform, on_output=on_output)
        if cancel is not None and cancel.is_set():
            sink.note("not started: cancelled")
            return _result(sink, None, 0.0, log_path, stopped=Stop.CANCEL)
        try:
            executable = _resolve(argv, env, cwd)
        except CouldNotRun as exc:
            # an empty log should say why it is empty
            sink.note(f"could not start: {exc.message}")
            raise
        out_r, out_w = os.pipe()

        def popen(stdin: int) -> subprocess.Popen[bytes]:
            def start() -> subprocess.Popen[bytes]:
                return _popen(
                    argv, executable, cwd=cwd, env=env, stdin=stdin, stdout=out_w, stderr=out_w
                )

            if not sandboxed:
                return start()
            # imported here: the verbs that only run git (`status`) need none of it
            from outloop_cli.process import session_keyring

            return session_keyring.popen_in_fresh_keyring(start)

        try:
            child = Child.start(
                popen,
                stdin_data=stdin_data,
                orphans=Orphans.REAP if sandboxed else Orphans.SWEEP,
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
        return _result(sink, child.returncode, time.monotonic() - start, log_path, stopped=stopped)


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
        child = Child.start(
            lambda stdin: _popen(
                argv, executable, cwd=cwd, env=env, stdin=stdin, stdout=out_w, stderr=err_w
            ),
            stdin_data=stdin_data,
            # small trusted tools (git): a daemon they start on purpose (auto gc) may live
            orphans=Orphans.LEAVE,
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


def _result(
    sink: LogSink, exit_code: int | None, duration: float, log_path: Path, *, stopped: Stop | None
) -> ProcessResult:
    return ProcessResult(
        exit_code=exit_code,
        duration=duration,
        timed_out=stopped is Stop.TIMEOUT,
        idle_timed_out=stopped is Stop.IDLE,
        cancelled=stopped is Stop.CANCEL,
        output_bytes=sink.count,
        tail=sink.tail(),
        log_path=log_path,
    )


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
    found = _which(program, search_path)
    if found is not None:
        # a relative PATH entry was looked up here, in outloop's own directory; exec would
        # read it against the child's (the worktree, where the agent writes): pin it here
        return found if found.startswith("/") else os.path.abspath(found)  # noqa: PTH100
    for directory in search_path.split(os.pathsep):
        candidate = Path(directory or ".") / program
        if candidate.is_file():
            raise CouldNotRun(
                f"`{candidate}` is not executable", hint=f"make it executable: chmod +x {candidate}"
            )
    raise ProgramNotFound(program, search_path=search_path, cwd=cwd)


def _which(program: str, search_path: str) -> str | None:
    """``shutil.which(program, path=search_path)`` on POSIX, without importing shutil.

    shutil brings bz2, lzma and zlib along: 3 ms of every ``outloop status``,
    which starts one git. ``tests/process/test_which.py`` holds both to one answer.
    """
    if not search_path:
        return None
    seen: set[str] = set()
    for directory in search_path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        # shutil's spelling of the answer (Path would fold `a//b` and drop a trailing `/.`)
        candidate = os.path.join(directory, program)  # noqa: PTH118
        # one stat per directory (exists and is-a-directory from the same answer): the
        # runner resolves git before every call, past each entry of a long PATH
        try:
            mode = os.stat(candidate).st_mode  # noqa: PTH116
        except (OSError, ValueError):
            continue
        if not stat.S_ISDIR(mode) and os.access(candidate, os.F_OK | os.X_OK):
            return candidate
    return None


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


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be > 0 seconds, not {value}")


def _seconds(value: float) -> str:
    return f"{value:g}s"
