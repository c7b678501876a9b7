"""The loop: baseline goal check, then turn → guards → snapshot → goal → commit → limits.

This module only says the order of the steps and how a run ends; each step
lives in the module named for it (``turn``, ``guards``, ``commit``, ``goal``,
``forge``, ``limits``) and reads and writes the run through its
:class:`~outloop_cli.engine.context.RunContext`. The engine never prints:
progress goes to an observer.
"""

from __future__ import annotations

import threading
import time

from outloop_cli.engine import containment, limits
from outloop_cli.engine.approval import ApprovalGates, GateClosed
from outloop_cli.engine.commit import Commits
from outloop_cli.engine.context import RunContext
from outloop_cli.engine.events import Observer, ignore_events
from outloop_cli.engine.finish import finish_run
from outloop_cli.engine.forge import ForgeSteps
from outloop_cli.engine.goal import check_goal_tests_the_worktree, evaluate_goal, restore_after_goal
from outloop_cli.engine.guards import Guards
from outloop_cli.engine.limits import Counters, Stop
from outloop_cli.engine.plan import LoopPlan, RunOptions
from outloop_cli.engine.resume import resume_run
from outloop_cli.engine.start import start_run
from outloop_cli.engine.turn import take_turn
from outloop_cli.errors import OutloopError
from outloop_cli.store.records import GoalResult, IterationRecord, RunRecord, StopReason
from outloop_cli.store.runs import RunPaths
from outloop_cli.telemetry.observer import traced_observer
from outloop_cli.timefmt import now_iso

STOP_POLL_SECONDS = 0.2


class _Stopped(Exception):
    """Internal: ends the loop with a reason; never escapes the engine."""

    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.detail)
        self.stop = stop


def _stop_if(stop: Stop | None) -> None:
    if stop is not None:
        raise _Stopped(stop)


class LoopRun:
    """One run of one loop, from worktree creation to the stop reason."""

    def __init__(
        self,
        plan: LoopPlan,
        options: RunOptions,
        *,
        observer: Observer = ignore_events,
        cancel: threading.Event | None = None,
        interrupt: threading.Event | None = None,
        resume_from: RunRecord | None = None,
    ) -> None:
        self.ctx = ctx = RunContext(
            plan,
            options,
            observer=observer,
            cancel=cancel or threading.Event(),
            interrupt=interrupt or threading.Event(),
            resume_from=resume_from,
        )
        # OpenTelemetry spans when the OTEL_EXPORTER_OTLP_* variables ask for them
        ctx.observer = traced_observer(
            ctx.observer, plan, lambda: ctx.record if ctx.has_record else None
        )
        self.guards = Guards(ctx)
        self.commits = Commits(ctx)
        self.forge = ForgeSteps(ctx)
        self.gates = ApprovalGates(ctx)
        self._first_iteration = 1
        # `outloop stop --after-step` lets the running step finish
        self._stop_after_step = False
        self._watch_done = threading.Event()

    @property
    def record(self) -> RunRecord | None:
        """The run's record: None until started, the crashed run's own when resuming."""
        return self.ctx.record if self.ctx.has_record else None

    @property
    def paths(self) -> RunPaths:
        return self.ctx.paths

    @property
    def cancel(self) -> threading.Event:
        return self.ctx.cancel

    def start(self) -> RunRecord:
        return start_run(self.ctx, self.guards)

    def resume(self) -> RunRecord:
        """Pick a stopped or crashed run up again from its last committed iteration."""
        self._first_iteration = resume_run(self.ctx, self.guards, self.commits)
        return self.ctx.record

    # -- the run, start to stop -----------------------------------------------

    def execute(self) -> RunRecord:
        ctx = self.ctx
        record = ctx.record
        watcher = threading.Thread(target=self._watch_stop_requests, daemon=True)
        watcher.start()
        try:
            try:
                self._loop()
            except (_Stopped, GateClosed) as stopped:
                self._finish(stopped.stop.reason, stopped.stop.detail)
            except KeyboardInterrupt:
                self.commits.commit_pending("interrupted")
                self._finish(StopReason.INTERRUPTED, "interrupted by the user")
            except OutloopError as exc:
                self._finish(StopReason.ERROR, exc.render())
        except BaseException:
            # a bug or a second Ctrl-C while finishing: still leave a readable record
            if record.state.live:
                self._finish(StopReason.ERROR, "outloop stopped unexpectedly", reports=False)
            raise
        finally:
            self._watch_done.set()
            ctx.release()
            containment.forget_run(ctx)
        return record

    def _finish(self, reason: StopReason, detail: str, *, reports: bool = True) -> None:
        try:
            # a step that failed between a commit and its settle left its import running
            self.commits.settle()
        except OutloopError as exc:
            if reason is StopReason.ERROR:
                self.ctx.note(self.ctx.current_n(), f"the last import failed too: {exc.message}")
            else:
                reason, detail = StopReason.ERROR, f"{exc.render()} (stopping: {detail})"
        finish_run(self.ctx, self.forge, reason, detail, reports=reports)

    def _watch_stop_requests(self) -> None:
        """``outloop stop`` writes a file; an immediate stop cancels the running step."""
        while not self._watch_done.wait(STOP_POLL_SECONDS):
            try:
                how = self.ctx.paths.stop_request.read_text().strip()
            except OSError:
                continue
            if how == "after-step":
                self._stop_after_step = True
            else:
                self.ctx.cancel.set()
                return

    def _loop(self) -> None:
        ctx = self.ctx
        record = ctx.record
        self.forge.open()
        previous = record.last_goal
        if previous is None or not any(it.n == 0 for it in record.iterations):
            record.iterations = [it for it in record.iterations if it.n != 0]
            counters = Counters(last_goal=self._baseline())
            resumed = False
        else:
            counters = Counters(last_goal=previous)
            resumed = True
        if counters.last_goal is not None and counters.last_goal.met:
            raise _Stopped(limits.met_before_any_turn(resumed=resumed))
        for n in range(self._first_iteration, ctx.plan.max_iterations + 1):
            self._check_before_turn(n)
            counters = self._iteration(n, counters)
        raise _Stopped(limits.out_of_iterations(ctx.plan.max_iterations))

    def _baseline(self) -> GoalResult:
        """Iteration 0: does the goal already hold at the starting commit?"""
        ctx = self.ctx
        check_goal_tests_the_worktree(ctx)
        it = IterationRecord(n=0, started_at=now_iso())
        ctx.record.iterations.append(it)
        started = time.monotonic()
        if ctx.config.goal.ci is not None:
            self.forge.push(0, ctx.plan.base_commit)
        goal = evaluate_goal(ctx, 0, self.forge.goal_context_fields())
        # the goal ran code of the repository: before git runs again, the same guard
        _stop_if(self.guards.git_config(0))
        restore_after_goal(ctx)
        it.goal = goal
        it.finished_at = now_iso()
        it.duration = time.monotonic() - started
        ctx.save()
        return goal

    def _check_before_turn(self, n: int) -> None:
        ctx = self.ctx
        if ctx.cancel.is_set() or self._stop_after_step or ctx.paths.stop_request.exists():
            raise self._cancelled("before the next turn")
        record = ctx.record
        _stop_if(
            limits.before_turn(
                ctx.config.limits, elapsed=ctx.elapsed(), cost=record.cost_usd, tokens=record.tokens
            )
        )
        # `approve:` gates wait here, between turns, with the run's clock stopped
        _stop_if(self.gates.before_turn(n))

    def _iteration(self, n: int, counters: Counters) -> Counters:
        """One agent turn, from its start to its commit; the counters after it."""
        ctx = self.ctx
        it = IterationRecord(n=n, started_at=now_iso())
        ctx.record.iterations.append(it)
        started = time.monotonic()
        ctx.audit("iteration_started", iteration=n)
        turn = take_turn(ctx, n, counters.last_goal)
        it.agent = turn.agent
        # no save here: the goal's phase (or the stop) saves the record a moment later
        # before any git command runs again: did the agent plant config or hooks?
        _stop_if(self.guards.git_config(n))
        changes = ctx.worktree.changes()
        _stop_if(self.guards.protected_paths(n, changes))
        _stop_if(self.guards.secrets(n, [c.path for c in changes]))
        _stop_if(self.guards.agent_commits(n))
        snapshot = self.commits.snapshot(it, changes, agent_head=self.guards.agent_head)
        if ctx.cancel.is_set():
            self.commits.commit(it, snapshot, None)
            raise self._cancelled("during the agent's turn")
        if turn.out_of_time:
            self.commits.commit(it, snapshot, None)
            raise _Stopped(limits.out_of_time_during_turn(ctx.config.limits))
        if ctx.config.goal.ci is not None:
            # CI judges what was pushed: commit and push first, then wait for the checks
            self.commits.commit(it, snapshot, None, awaiting_ci=True)
            assert it.commit is not None
            self.forge.push(n, it.commit)
            goal = evaluate_goal(ctx, n, self.forge.goal_context_fields(), review=snapshot.tree)
            it.goal = goal
            if ctx.cancel.is_set():
                raise self._cancelled("while waiting for CI")
            restore_after_goal(ctx)
        else:
            goal = evaluate_goal(ctx, n, self.forge.goal_context_fields(), review=snapshot.tree)
            # the goal ran code the agent wrote: before git runs again, the same guard
            _stop_if(self.guards.git_config(n))
            if ctx.cancel.is_set():
                self.commits.commit(it, snapshot, None)
                raise self._cancelled("while checking the goal")
            it.goal = goal
            # the import into the user's repository runs beside the restore's scan
            self.commits.commit(it, snapshot, goal, import_later=True)
            restore_after_goal(ctx)
            self.commits.settle()
            # the push goes from the user's repository: only what was imported there
            if it.commit is not None:
                self.forge.push(n, it.commit)
        it.finished_at = now_iso()
        it.duration = time.monotonic() - started
        # no save here: what follows saves the record within milliseconds, the next
        # turn's phase, an approval gate's wait, or the stop's final record
        counters, stop = limits.after_turn(
            counters,
            ctx.config.limits,
            n=n,
            max_iterations=ctx.plan.max_iterations,
            agent=turn.agent,
            goal=goal,
            changed_nothing=snapshot.empty,
        )
        _stop_if(stop)
        return counters

    def _cancelled(self, when: str) -> _Stopped:
        return _Stopped(limits.cancelled(interrupted=self.ctx.interrupt.is_set(), when=when))
