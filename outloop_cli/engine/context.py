"""The one mutable place of a run: its record, files, audit log, clock and stop flags.

Every step of a run (turn, guards, goal, commit, forge, resume, finish)
reads and changes the run through a :class:`RunContext`, so what a step may
touch is written down in one class instead of spread over the attributes of
the loop. It also holds the plumbing they share: an event for the observer,
an event for the audit log, a save of ``run.json``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from outloop_cli.credentials.run_key import load_run_key, new_run_key
from outloop_cli.engine.egress import RunEgress
from outloop_cli.engine.events import Event, Observer
from outloop_cli.store.audit import AuditLog
from outloop_cli.store.record_writer import RecordWriter
from outloop_cli.store.runs import RunPaths, RunStore, new_run_id

if TYPE_CHECKING:
    from outloop_cli.config.model import LoopConfig
    from outloop_cli.credentials.masking import Masker
    from outloop_cli.engine.plan import LoopPlan, RunOptions
    from outloop_cli.git.worktree import Worktree
    from outloop_cli.store.records import GoalResult, RunRecord


class RunContext:
    """One run's shared state; created before the run starts, so ``outloop stop`` can find it."""

    def __init__(
        self,
        plan: LoopPlan,
        options: RunOptions,
        *,
        observer: Observer,
        cancel: threading.Event,
        interrupt: threading.Event,
        resume_from: RunRecord | None = None,
    ) -> None:
        self.plan = plan
        self.config: LoopConfig = plan.config
        self.options = options
        self.observer = observer
        # set by `outloop stop` (stop reason `stopped`) or, with `interrupt`, by Ctrl-C
        # in another thread (stop reason `interrupted`): either kills the running step
        self.cancel = cancel
        self.interrupt = interrupt
        self.store = RunStore(plan.repo.info.common_dir)
        self.run_id = resume_from.run_id if resume_from else new_run_id()
        self.paths: RunPaths = self.store.paths(self.run_id)
        # every audit line is sealed with the run's own key, kept outside the repository;
        # a resumed run goes on with the key it started with (None: it has none left)
        self.run_key = load_run_key(self.run_id) if resume_from else new_run_key(self.run_id)
        self.audit_log = AuditLog(
            self.paths.audit, self.run_id, seal=self.run_key.mac if self.run_key else None
        )
        # the run lock says "running" for exactly as long as this process lives; the loop
        # lock keeps a second run of the same loop out (unless --parallel); the broker
        # goes with them, which revokes every capability it handed out
        self.held = contextlib.ExitStack()
        # progress saves are written off the loop's thread (see release)
        self._record_writer = RecordWriter(self.paths.run_json)
        # masks granted secrets, CI values and live capabilities in everything the run
        # shows; replaced once the forge adds its own tokens
        self.masker: Masker | None = None
        self._record = resume_from
        self._worktree: Worktree | None = None
        self._started = time.monotonic()
        # active time of earlier sessions of this run (resume): the time limit spans them all
        self._elapsed_before = resume_from.duration if resume_from else 0.0
        # the broker and the egress proxy report from threads of their own
        self._audit_lock = threading.Lock()
        self.egress = RunEgress()

    def release(self) -> None:
        """The run is over in this process: its last record on disk, then locks and broker go.

        In that order: once the run lock is free, another process may take the
        run over (resume, a reused worktree), and no late write of ours may land
        on its record.
        """
        try:
            self._record_writer.close()
        finally:
            self.held.close()

    # -- the record and the worktree, once they exist --

    @property
    def has_record(self) -> bool:
        return self._record is not None

    @property
    def record(self) -> RunRecord:
        if self._record is None:
            raise RuntimeError("run not started")
        return self._record

    @record.setter
    def record(self, record: RunRecord) -> None:
        self._record = record

    @property
    def has_worktree(self) -> bool:
        return self._worktree is not None

    @property
    def worktree(self) -> Worktree:
        if self._worktree is None:
            raise RuntimeError("run not started")
        return self._worktree

    @worktree.setter
    def worktree(self, worktree: Worktree) -> None:
        self._worktree = worktree

    # -- the clock --

    def elapsed(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._started)

    def pause_clock(self, seconds: float) -> None:
        """Take ``seconds`` (a wait for a human's approval) off the run's active time."""
        self._started += seconds

    def time_left(self) -> float | None:
        if self.config.limits.max_time is None:
            return None
        return self.config.limits.max_time - self.elapsed()

    def current_n(self) -> int:
        record = self._record
        return record.iterations[-1].n if record and record.iterations else 0

    # -- what every step reports --

    def emit(
        self,
        kind: str,
        n: int,
        message: str,
        *,
        phase: str | None = None,
        goal: GoalResult | None = None,
        save: bool = True,
    ) -> None:
        """Tell the observer; a new ``phase`` is saved for ``outloop status`` unless ``save``
        is False (the caller saves the record itself a moment later)."""
        if phase is not None and self._record is not None:
            self._record.phase = phase
            self._record.current_iteration = n
            self._record.duration = self.elapsed()
            # progress for `outloop status`; losing it to a crash costs nothing
            if save:
                self.save_soon()
        self.observer(
            Event(
                kind=kind,
                run_id=self.run_id,
                loop=self.config.name,
                iteration=n,
                max_iterations=self.plan.max_iterations,
                message=message,
                phase=phase,
                elapsed=self.elapsed(),
                goal=goal,
            )
        )

    def note(self, n: int, message: str) -> None:
        self.emit("note", n, message)

    def audit(self, event: str, **fields: object) -> None:
        with self._audit_lock:
            self.audit_log.append(event, **fields)
            head = self.audit_log.last_head
            if head is not None and self._record is not None:
                self._record.audit_head = {"seq": head.seq, "hash": head.hash}

    def audit_fields(self, event: str, fields: dict[str, object]) -> None:
        """:meth:`audit` for a sink that hands over its fields as one mapping (the broker)."""
        self.audit(event, **fields)

    def save(self, *, durable: bool = True) -> None:
        """Write run.json now (fsynced unless ``durable`` is False)."""
        self._record_writer.write(self.record.to_json(), durable=durable)

    def save_soon(self) -> None:
        """Hand run.json to the writer thread: progress, and what the branch already holds.

        The snapshot is taken here, on the caller's thread; only the write is deferred.
        A crash before it lands loses nothing that resume cannot read from the branch.
        """
        self._record_writer.submit(self.record.to_json())
