"""A run's observer events as spans: a trace per run, a span per iteration, one per step.

A resumed run's spans join the trace of the run it resumes (its id is derived
from the run id, ``export.run_trace_id``), under a second ``outloop.run`` root
marked ``outloop.run.resumed``.

``outloop.run`` is the root; each iteration (0 is the baseline goal check) is an
``outloop.iteration`` under it, with ``outloop.agent_turn``, ``outloop.goal_check``,
``outloop.commit`` and ``outloop.push`` as its children, started and ended by
the events the progress view also gets. Attributes are counts, verdicts, ids
and labels read from the run's record: never a prompt, a message, an output, a
path outside the run's names, or a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from outloop_cli.engine.events import Event
from outloop_cli.store.records import (
    AgentResult,
    GoalResult,
    IterationRecord,
    RunRecord,
    StopReason,
)
from outloop_cli.telemetry.export import Exporting, run_trace_id

STEP_SPANS = {
    "agent": "outloop.agent_turn",
    "goal": "outloop.goal_check",
    "commit": "outloop.commit",
    "push": "outloop.push",
}
# the iteration's step ends with its event; the record has its facts only a little later
STEP_ENDS = {"agent_exited": "agent", "goal_evaluated": "goal", "committed": "commit"}

Attributes = dict[str, "str | bool | int | float"]


def _set(span: Span, attributes: Attributes) -> None:
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def goal_attributes(goal: GoalResult) -> Attributes:
    attrs: Attributes = {
        "outloop.goal.verdict": "met" if goal.met else "timed_out" if goal.timed_out else "not_met",
        "outloop.goal.met": goal.met,
        "outloop.goal.duration": round(goal.duration, 3),
    }
    if goal.exit_code is not None:
        attrs["outloop.goal.exit_code"] = goal.exit_code
    failing = goal.failing_count
    if failing is not None:
        attrs["outloop.goal.tests.failing"] = failing
    if goal.tests is not None:
        attrs["outloop.goal.tests.total"] = goal.tests.total
        attrs["outloop.goal.tests.passed"] = goal.tests.passed
        attrs["outloop.goal.tests.skipped"] = goal.tests.skipped
    return attrs


def agent_attributes(agent: AgentResult, label: str) -> Attributes:
    # the GenAI conventions' names where they fit: an agent invocation and its token usage
    attrs: Attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": label,
        "outloop.agent.duration": round(agent.duration, 3),
    }
    if agent.exit_code is not None:
        attrs["outloop.agent.exit_code"] = agent.exit_code
    if agent.input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = agent.input_tokens
    if agent.output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = agent.output_tokens
    if agent.cost_usd is not None:
        attrs["outloop.cost.usd"] = round(agent.cost_usd, 6)
    if agent.turns is not None:
        attrs["outloop.agent.turns"] = agent.turns
    if agent.error is not None:
        attrs["error.type"] = agent.error
    return attrs


@dataclass
class _Iteration:
    """The open span of one iteration and of its current step."""

    n: int
    span: Span
    started_ns: int
    step: str | None = None
    step_span: Span | None = None
    # a step whose event came, ended once the record has its facts (the next event)
    ending: list[tuple[str, Span, int]] = field(default_factory=list)


class RunTrace:
    """Turns one run's events into spans; every method is safe to call in any order."""

    def __init__(
        self,
        exporting: Exporting,
        record_of: Callable[[], RunRecord | None],
        *,
        workspace: str | None,
        agent_label: str,
    ) -> None:
        self._exporting = exporting
        self._tracer = exporting.tracer
        self._record_of = record_of
        self._workspace = workspace
        self._agent_label = agent_label
        self._run: Span | None = None
        self._run_id = ""
        self._iteration: _Iteration | None = None
        self._failed_before = exporting.failed_batches
        self.finished = False

    # -- events ----------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if self.finished:
            return
        now = time.time_ns()
        run = self._ensure_run(event, now)
        if self._iteration is not None:
            self._end_waiting_steps(self._iteration)
        if event.kind == "phase" and event.phase in STEP_SPANS:
            iteration = self._ensure_iteration(run, event.iteration, now)
            self._start_step(iteration, event.phase, now)
        elif event.kind in STEP_ENDS and self._iteration is not None:
            self._step_done(self._iteration, STEP_ENDS[event.kind], now, event)
        elif event.kind == "run_stopped":
            self._end_run(run, now)

    def failed_to_export(self) -> bool:
        return self._exporting.failed_batches > self._failed_before

    # -- the run ----------------------------------------------------------------

    def _ensure_run(self, event: Event, now: int) -> Span:
        if self._run is not None:
            return self._run
        self._run_id = event.run_id
        attrs: Attributes = {"outloop.run.id": event.run_id, "outloop.loop.name": event.loop}
        if self._workspace:
            attrs["outloop.workspace"] = self._workspace
        attrs["outloop.run.max_iterations"] = event.max_iterations
        record = self._record_of()
        if record is not None:
            attrs["outloop.run.resumed"] = bool(record.iterations)
            attrs["vcs.ref.head.name"] = record.branch
            attrs["outloop.run.base_commit"] = record.base_commit
            # not the goal's command line: a loop file may spell a value out in it
        with self._exporting.ids.root_trace_id(run_trace_id(event.run_id)):
            self._run = self._tracer.start_span(
                "outloop.run",
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                kind=SpanKind.INTERNAL,
                start_time=now,
                attributes=attrs,
            )
        return self._run

    def _end_run(self, run: Span, now: int) -> None:
        if self._iteration is not None:
            self._end_iteration(self._iteration, now)
        record = self._record_of()
        if record is not None:
            self._describe_run(run, record)
        run.end(end_time=now)
        self.finished = True
        self._exporting.flush()

    def _describe_run(self, run: Span, record: RunRecord) -> None:
        attrs: Attributes = {"outloop.run.iterations": len(record.agent_iterations)}
        if record.stop_reason is not None:
            attrs["outloop.run.stop_reason"] = record.stop_reason.value
        if record.exit_code is not None:
            attrs["outloop.run.exit_code"] = record.exit_code
        attrs["outloop.goal.met"] = record.goal_met
        if record.cost_usd is not None:
            attrs["outloop.cost.usd"] = round(record.cost_usd, 6)
        inputs = [it.agent.input_tokens for it in record.iterations if it.agent]
        outputs = [it.agent.output_tokens for it in record.iterations if it.agent]
        # the run's totals under outloop's names: gen_ai.usage.* stays on the agent spans,
        # so a backend summing it over a trace counts each token once
        if any(v is not None for v in inputs):
            attrs["outloop.run.usage.input_tokens"] = sum(v or 0 for v in inputs)
        if any(v is not None for v in outputs):
            attrs["outloop.run.usage.output_tokens"] = sum(v or 0 for v in outputs)
        _set(run, attrs)
        if record.stop_reason is not None and record.stop_reason is not StopReason.GOAL_MET:
            run.set_status(Status(StatusCode.ERROR, record.stop_reason.value))
        elif record.stop_reason is StopReason.GOAL_MET:
            run.set_status(Status(StatusCode.OK))

    # -- iterations -------------------------------------------------------------

    def _ensure_iteration(self, run: Span, n: int, now: int) -> _Iteration:
        current = self._iteration
        if current is not None and current.n == n:
            return current
        if current is not None:
            self._end_iteration(current, now)
        context = trace.set_span_in_context(run)
        span = self._tracer.start_span(
            "outloop.iteration",
            context=context,
            start_time=now,
            attributes={"outloop.iteration": n, "outloop.run.id": self._run_id},
        )
        self._iteration = _Iteration(n=n, span=span, started_ns=now)
        return self._iteration

    def _end_iteration(self, iteration: _Iteration, now: int) -> None:
        self._end_waiting_steps(iteration)
        record = self._record_of()
        it = _iteration_record(record, iteration.n)
        end = now
        if it is not None and it.finished_at is not None and it.duration > 0:
            # the iteration ended when its record says, not when the next one began
            end = max(iteration.started_ns, min(now, iteration.started_ns + int(it.duration * 1e9)))
        if iteration.step_span is not None:
            self._end_step(iteration.step or "", iteration.step_span, end, it)
            iteration.step_span = None
        if it is not None:
            self._describe_iteration(iteration.span, it)
        if record is not None and record.stop_reason is not None and record.iterations:
            last = record.iterations[-1].n == iteration.n
            if last and record.stop_reason in _ITERATION_FAILURES:
                iteration.span.set_status(Status(StatusCode.ERROR, record.stop_reason.value))
        iteration.span.end(end_time=end)
        self._iteration = None

    def _describe_iteration(self, span: Span, it: IterationRecord) -> None:
        attrs: Attributes = {"outloop.iteration.changed_files": len(it.changed_files)}
        if it.commit is not None:
            attrs["outloop.commit.sha"] = it.commit
        if it.goal is not None:
            attrs.update(goal_attributes(it.goal))
        if it.agent is not None:
            if it.agent.cost_usd is not None:
                attrs["outloop.cost.usd"] = round(it.agent.cost_usd, 6)
            if it.agent.error is not None:
                attrs["error.type"] = it.agent.error
                span.set_status(Status(StatusCode.ERROR, f"agent: {it.agent.error}"))
        _set(span, attrs)

    # -- steps ------------------------------------------------------------------

    def _start_step(self, iteration: _Iteration, phase: str, now: int) -> None:
        if iteration.step_span is not None:
            it = _iteration_record(self._record_of(), iteration.n)
            self._end_step(iteration.step or "", iteration.step_span, now, it)
        context = trace.set_span_in_context(iteration.span)
        iteration.step = phase
        iteration.step_span = self._tracer.start_span(
            STEP_SPANS[phase],
            context=context,
            start_time=now,
            attributes={"outloop.iteration": iteration.n},
        )

    def _step_done(self, iteration: _Iteration, step: str, now: int, event: Event) -> None:
        if iteration.step != step or iteration.step_span is None:
            return
        span = iteration.step_span
        iteration.step_span = None
        iteration.step = None
        if step == "goal" and event.goal is not None:
            self._describe_goal(span, event.goal)
            span.end(end_time=now)
        else:
            iteration.ending.append((step, span, now))

    def _end_waiting_steps(self, iteration: _Iteration) -> None:
        if not iteration.ending:
            return
        it = _iteration_record(self._record_of(), iteration.n)
        for step, span, ended in iteration.ending:
            self._end_step(step, span, ended, it)
        iteration.ending.clear()

    def _end_step(self, step: str, span: Span, end: int, it: IterationRecord | None) -> None:
        if it is not None:
            if step == "agent" and it.agent is not None:
                _set(span, agent_attributes(it.agent, self._agent_label))
                if it.agent.error is not None:
                    span.set_status(Status(StatusCode.ERROR, f"agent: {it.agent.error}"))
            elif step == "goal" and it.goal is not None:
                self._describe_goal(span, it.goal)
            elif step == "commit" and it.commit is not None:
                _set(
                    span,
                    {
                        "outloop.commit.sha": it.commit,
                        "outloop.commit.changed_files": len(it.changed_files),
                    },
                )
        started = getattr(span, "start_time", None)
        span.end(end_time=max(end, started) if isinstance(started, int) else end)

    def _describe_goal(self, span: Span, goal: GoalResult) -> None:
        _set(span, goal_attributes(goal))
        if goal.timed_out:
            span.set_status(Status(StatusCode.ERROR, "goal check timed out"))


# an iteration that ended the run this way failed in itself (not merely "not yet")
_ITERATION_FAILURES = frozenset(
    {
        StopReason.AGENT_ERROR,
        StopReason.PROTECTED_PATH,
        StopReason.SECRET_IN_DIFF,
        StopReason.ERROR,
        StopReason.INTERRUPTED,
    }
)


def _iteration_record(record: RunRecord | None, n: int) -> IterationRecord | None:
    if record is None:
        return None
    for it in reversed(record.iterations):
        if it.n == n:
            return it
    return None
