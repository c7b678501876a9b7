"""A helper program that serves while outloop works: started, awaited, stopped with its tree.

For what lives beside a command rather than being awaited by it (the agency
demo's scripted CRM servers, its private Secret Service). Each child gets its
own session, so stopping it reaches everything it started; output goes to a
log file, stdin gets ``stdin_data`` (how a key reaches a child without argv).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from outloop_cli.errors import CouldNotRun

T = TypeVar("T")
_STOP_GRACE = 3.0
_POLL = 0.05


class Background:
    """One started helper; a context manager that stops it on exit."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path):
        self.argv = tuple(argv)
        self.log_path = log_path
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a helper's log may hold what only its user may read (the dashboard's URL
        # carries its access token): the owner's alone, whatever the umask
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
        except OSError as exc:
            raise CouldNotRun(
                f"cannot write the log {log_path}: {exc.strerror or exc}",
                hint="a link or a file of someone else's is in its place: remove it",
            ) from None
        self._log: IO[bytes] = os.fdopen(fd, "ab")
        try:
            self._proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise CouldNotRun(f"cannot start `{argv[0]}`: {exc.strerror or exc}") from None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def send(self, data: bytes) -> None:
        """Write ``data`` to the child's stdin and close it."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        finally:
            self._proc.stdin.close()

    def wait_for(self, probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
        """Call ``probe`` until it returns a value; fail if the child exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found is not None:
                return found
            if self._proc.poll() is not None:
                raise CouldNotRun(
                    f"`{self.argv[0]}` exited with {self._proc.returncode} before {what}",
                    hint=f"its output is in {self.log_path}",
                )
            if time.monotonic() > deadline:
                raise CouldNotRun(
                    f"`{self.argv[0]}` did not get to {what} within {timeout:g} s",
                    hint=f"its output is in {self.log_path}",
                )
            time.sleep(_POLL)

    def stop(self) -> None:
        """SIGTERM to the child's session, SIGKILL after a grace period; idempotent."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        # whatever else the session started (a daemon that forked) goes with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        self._log.close()

    def detach(self) -> None:
        """Leave the child running on its own (it has its own session); close our ends."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        self._log.close()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
