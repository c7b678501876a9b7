"""run.json written off the run's own thread: the loop hands over a snapshot and goes on.

A run saves its record three times an iteration (the agent's phase, the
goal's, the commit). Each save is a write and a rename, and on ext4 a rename
over an existing file starts writeback of the new one, so a save costs the
loop a millisecond or more while git and the sandbox wait. Progress saves
need not hold the loop up: readers (``outloop status``, ``watch``, the web
page) poll the file, and a crash loses nothing that the branch does not hold
(``engine/resume.py`` brings the record in line with the branch's trailers).

What stays true:

- a reader sees a whole record, old or new, never half of one (the write is
  :func:`~outloop_cli.store.atomic.atomic_write_bytes`);
- the file only ever moves forward: every snapshot has a number, and one
  older than what is on disk is dropped, never written over a newer one;
- :meth:`RecordWriter.write` (the run's start, an approval wait, the final
  record) is synchronous and, unless asked otherwise, fsynced; it supersedes
  anything still queued, and :meth:`close` waits until the last snapshot is
  on disk.
"""

from __future__ import annotations

import threading
from pathlib import Path

from outloop_cli.store.atomic import atomic_write_bytes


class RecordWriter:
    """One record file, written by a background thread for :meth:`submit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        # the newest snapshot handed over and not yet written, with its number
        self._pending: tuple[int, bytes] | None = None
        self._submitted = 0
        # the number of the snapshot on disk; writes are serialised by _write_lock
        self._written = 0
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        # a write the thread could not make: raised to the next caller, never lost
        self._failure: BaseException | None = None

    def submit(self, data: bytes) -> None:
        """Queue ``data`` to be written soon; a newer snapshot replaces a queued one."""
        self._raise_failure()
        with self._cond:
            if not self._closing:
                self._submitted += 1
                self._pending = (self._submitted, data)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._drain, name="outloop-record-writer", daemon=True
                    )
                    self._thread.start()
                self._cond.notify()
                return
        # after close (a finished run's last words): no thread drains the queue any more
        self.write(data, durable=False)

    def write(self, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` now (on this thread); what was queued before it is superseded."""
        with self._cond:
            self._submitted += 1
            number = self._submitted
            self._pending = None
            self._cond.notify_all()
        self._write(number, data, durable=durable)
        self._raise_failure()

    def close(self) -> None:
        """Wait until the last snapshot handed over is on disk; stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._raise_failure()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                job, self._pending = self._pending, None
                if job is None:
                    return
            try:
                self._write(*job, durable=False)
            except BaseException as exc:  # the loop's next save or close raises it
                self._failure = exc

    def _write(self, number: int, data: bytes, *, durable: bool) -> None:
        with self._write_lock:
            if number <= self._written:
                return
            atomic_write_bytes(self.path, data, durable=durable)
            self._written = number

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
