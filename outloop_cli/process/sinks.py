"""Moving a child's bytes: the pump between its pipes and our sinks, and the log sink.

A flood of output must not grow outloop, and a child that keeps its pipes
open must not hang it: the pump reads on a thread of its own and can be told
to stop, and the log sink writes each chunk through to the file and keeps
only a bounded tail in memory.
"""

from __future__ import annotations

import io
import os
import select
import selectors
import threading
import time
from collections.abc import Callable, Mapping

# How often a pump with nothing to read looks whether it was told to stop.
_POLL = 0.05
_CHUNK = 1 << 16
# Once the tree is dead, EOF should follow at once; if it doesn't, a
# descendant that escaped us still holds the pipe, and we stop reading.
_DRAIN = 0.5
# Hard cap on reading after we asked the pump to stop, for an escaped
# descendant that keeps the pipe full.
_DRAIN_CAP = 2.0


class Pump(threading.Thread):
    """Feeds stdin and drains the output pipes on one thread until EOF or told to stop.

    Owns the parent's ends of the pipes and closes them. A failure here (a
    sink or transform raising, a full disk) is kept in ``error`` for the
    caller's thread to act on and re-raise.

    ``inline``: no thread of its own; the caller's thread pumps while it waits
    for the child (:meth:`serve`). Starting and joining a thread per child
    costs more than a short child (git) takes where the machine is busy.
    """

    def __init__(
        self,
        outputs: Mapping[int, Callable[[bytes], object]],
        stdin: tuple[int, bytes] | None,
        *,
        inline: bool = False,
    ) -> None:
        super().__init__(name="outloop-pump", daemon=True)
        self._outputs = dict(outputs)
        self._stdin = stdin
        self._stopping = threading.Event()
        self.error: BaseException | None = None
        self._inline: _Inline | None = _Inline(self._outputs, stdin) if inline else None

    def start(self) -> None:
        if self._inline is None:
            super().start()

    def serve(self, timeout: float, pidfd: int) -> bool:
        """Inline: pump for up to ``timeout`` seconds or until ``pidfd`` is readable (True)."""
        assert self._inline is not None
        if self.error is not None or not self._inline.fds:
            return _readable(pidfd, timeout)
        try:
            return self._inline.serve(timeout, pidfd)
        except Exception as exc:  # handed to the caller, as from the thread
            self.error = exc
            self._inline.close()
            return _readable(pidfd, 0)

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

    def drained(self) -> bool:
        """Wait briefly for EOF; False when something still holds a pipe open."""
        if self._inline is not None:
            return self._pump_inline(_DRAIN)
        self.join(_DRAIN)
        return not self.is_alive()

    def finish(self) -> None:
        """Wait briefly for EOF, then stop reading whatever still holds the pipes."""
        if self._inline is not None:
            if not self._pump_inline(_DRAIN):
                # as the thread does once told to stop: read what is there, up to a cap
                cap = time.monotonic() + _DRAIN_CAP
                while self._inline.fds and time.monotonic() < cap:
                    if not self._inline.serve(0, None):
                        break
            self._inline.close()
            return
        self.join(_DRAIN)
        self._stopping.set()
        self.join()

    def _pump_inline(self, seconds: float) -> bool:
        """Inline: pump until EOF on every pipe (True) or ``seconds`` pass."""
        assert self._inline is not None
        deadline = time.monotonic() + seconds
        try:
            while self._inline.fds and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._inline.serve(left, None)
        except Exception as exc:
            self.error = exc
            self._inline.close()
        return not self._inline.fds


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


class _Inline:
    """The pump's pipes served from the caller's thread, one ``select`` at a time."""

    def __init__(
        self, outputs: Mapping[int, Callable[[bytes], object]], stdin: tuple[int, bytes] | None
    ) -> None:
        self._outputs = outputs
        self._sel = selectors.DefaultSelector()
        self.fds: set[int] = set()
        for fd in outputs:
            self._sel.register(fd, selectors.EVENT_READ)
            self.fds.add(fd)
        self._pending = memoryview(b"")
        if stdin is not None:
            stdin_fd, data = stdin
            self._pending = memoryview(data)
            if self._pending:
                os.set_blocking(stdin_fd, False)
                self._sel.register(stdin_fd, selectors.EVENT_WRITE)
                self.fds.add(stdin_fd)
            else:
                os.close(stdin_fd)

    def serve(self, timeout: float, pidfd: int | None) -> bool:
        """One round: move what is ready; True when ``pidfd`` is readable (the child exited)."""
        if pidfd is not None:
            self._sel.register(pidfd, selectors.EVENT_READ)
        try:
            events = self._sel.select(timeout)
        finally:
            if pidfd is not None:
                self._sel.unregister(pidfd)
        exited = False
        for key, _ in events:
            fd = key.fd
            if fd == pidfd:
                exited = True
                continue
            if fd in self._outputs:
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    self._outputs[fd](chunk)
                    continue
            else:
                try:
                    written = os.write(fd, self._pending[:_CHUNK])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    written = len(self._pending)  # the child won't read the rest
                self._pending = self._pending[written:]
                if self._pending:
                    continue
            self._sel.unregister(fd)
            self.fds.discard(fd)
            os.close(fd)
        return exited

    def close(self) -> None:
        for fd in self.fds:
            self._sel.unregister(fd)
            os.close(fd)
        self.fds.clear()
        self._sel.close()


class LogSink:
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
        # bytes written to the log (after the transform), not counting our markers
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

    def tail(self) -> str:
        """The last ``tail_bytes`` of output, decoded."""
        with self._lock:
            tail = bytes(self._tail[-self._tail_bytes :]) if self._tail_bytes else b""
        if self.count > len(tail):
            # cut from longer output: don't start on the broken end of a UTF-8 character
            tail = _skip_partial_char(tail)
        return tail.decode("utf-8", errors="replace")


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
