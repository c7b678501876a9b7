"""Approval gates: where a run waits for a human (``approve:`` in the loop file).

A gate opens a request: the record says ``state: waiting_approval`` with what
is awaited and since when (``run.json``'s ``approval``), the audit log gets
``approval_requested``, and the engine's one thread waits here, between
steps, so nothing of the agent runs. It polls for the decision file of that
request id only (``store/control.py``), for ``outloop stop`` and for the
timeout; the wait is taken off the run's clock, so ``limits.max_time`` never
counts it.

The gates and when they ask:

- ``push``: before outloop's first push of the run's branch (one approval per
  run; a resumed run that was approved does not ask again);
- ``pr``: before the pull request is opened or updated at the end of a run,
  which is when it is created or taken out of draft;
- ``credentials: [NAME]``: before the first agent turn that would hold the
  credential. The broker holds the name back until then (it refuses the
  agent's requests with ``awaiting_approval``), so a credential is never
  granted without an approval, and the agent never sits blocked on a request
  while a human decides;
- ``every_iterations: N``: after turns N, 2N, … before the next turn;
- ``over_cost_usd: X``: once the reported cost exceeds X, before the next
  turn (once per run).

A denial ends the run as ``approval_denied``, no decision within
``approve.timeout`` as ``approval_timeout``; at the ``pr`` gate, which comes
when the run has already ended, either only leaves the pull request unopened
and the run keeps its stop reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from outloop_cli.engine import limits
from outloop_cli.engine.limits import Stop
from outloop_cli.store import control
from outloop_cli.store.records import RunState, StopReason
from outloop_cli.timefmt import format_seconds, now_iso

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext

POLL_SECONDS = 0.2
# how long the capabilities stay valid past the last poll of a wait
CAPABILITY_MARGIN = 60.0

PUSH = "push"
PULL_REQUEST = "pr"
CREDENTIAL = "credential"
ITERATIONS = "iterations"
COST = "cost"


class GateClosed(Exception):
    """A gate inside a step (the push) ended the run; the loop turns it into the stop."""

    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.detail)
        self.stop = stop


@dataclass(frozen=True)
class _Request:
    """One pending approval: its id, the gate asking, and what is approved."""

    request_id: str
    gate: str
    # what is approved once for the run (``record.approved``), None for a one-off
    key: str | None
    what: str


class ApprovalGates:
    """The gates of one run, as its loop file's ``approve:`` declares them."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._config = ctx.config.approve

    # -- the gates --

    def before_turn(self, n: int) -> Stop | None:
        """Credentials, then every N iterations, then the cost: before turn ``n`` starts."""
        ctx = self._ctx
        record = ctx.record
        held = set(self._config.credentials)
        for name in ctx.plan.access.agent_credential_names():
            if name not in held:
                continue
            key = f"{CREDENTIAL}:{name}"
            if key not in record.approved:
                stop = self._ask(
                    n,
                    CREDENTIAL,
                    key,
                    f"grant credential `{name}` to the agent (from iteration {n} on)",
                )
                if stop is not None:
                    return stop
            ctx.plan.access.release(name)
        every = self._config.every_iterations
        done = n - 1
        if every and done > 0 and done % every == 0:
            key = f"{ITERATIONS}:{done}"
            if key not in record.approved:
                stop = self._ask(
                    n, ITERATIONS, key, f"continue after {done} iteration(s) (asked every {every})"
                )
                if stop is not None:
                    return stop
        over = self._config.over_cost_usd
        cost = record.cost_usd
        if over is not None and cost is not None and cost > over and COST not in record.approved:
            stop = self._ask(
                n, COST, COST, f"continue with ${cost:.2f} spent, over the ${over:.2f} threshold"
            )
            if stop is not None:
                return stop
        return None

    def before_push(self, n: int, sha: str) -> None:
        """Raises :class:`GateClosed` when the push is denied (or never approved)."""
        if not self._config.push or PUSH in self._ctx.record.approved:
            return
        stop = self._ask(
            n, PUSH, PUSH, f"push the run's branch {self._ctx.record.branch} (at {sha[:10]})"
        )
        if stop is not None:
            raise GateClosed(stop)

    def before_pull_request(self) -> Stop | None:
        """None when the pull request may be published; else why not (the run keeps its reason)."""
        if not self._config.pr:
            return None
        ctx = self._ctx
        if ctx.record.stop_reason in (StopReason.APPROVAL_DENIED, StopReason.APPROVAL_TIMEOUT):
            # the human already said stop (or said nothing): not a second question
            return Stop(ctx.record.stop_reason, "the run ended at an approval gate")
        if ctx.cancel.is_set() or ctx.paths.stop_request.exists():
            return limits.cancelled(
                interrupted=ctx.interrupt.is_set(), when="before the pull request"
            )
        draft = "" if ctx.record.goal_met else " as a draft"
        return self._ask(
            ctx.current_n(), PULL_REQUEST, None, f"open or update the pull request{draft}"
        )

    # -- the wait --

    def _ask(self, n: int, gate: str, key: str | None, what: str) -> Stop | None:
        ctx = self._ctx
        record = ctx.record
        timeout = self._config.timeout
        request = _Request(control.new_request_id(), gate, key, what)
        since = now_iso()
        deadline_at = datetime.now(timezone.utc) + timedelta(seconds=timeout)
        state_before, phase_before = record.state, record.phase
        record.approval = {
            "id": request.request_id,
            "gate": gate,
            "what": what,
            "iteration": n,
            "since": since,
            "timeout": timeout,
            "timeout_at": deadline_at.isoformat(timespec="seconds"),
        }
        record.state = RunState.WAITING_APPROVAL
        ctx.audit(
            "approval_requested",
            request=request.request_id,
            gate=gate,
            what=what,
            iteration=n,
            timeout=timeout,
        )
        ctx.emit(
            "approval_requested",
            n,
            f"waiting for approval to {what}: `outloop approve {ctx.run_id}` or "
            f"`outloop deny {ctx.run_id} --reason …` (times out in {format_seconds(timeout)})",
            phase="waiting_approval",
        )
        ctx.save()
        started = time.monotonic()
        try:
            return self._wait(n, request, started + timeout)
        finally:
            # the limits never count the time a human took
            ctx.pause_clock(time.monotonic() - started)
            record.approval = None
            if record.state is RunState.WAITING_APPROVAL:
                record.state = state_before
                record.phase = phase_before
            ctx.save()

    def _wait(self, n: int, request: _Request, deadline: float) -> Stop | None:
        ctx = self._ctx
        paths = ctx.paths
        while True:
            self._drop_stale(request.request_id)
            decision = control.read_decision(paths, request.request_id)
            if decision is not None:
                control.decision_file(paths, request.request_id).unlink(missing_ok=True)
                return self._decided(n, request, decision)
            if ctx.cancel.is_set() or paths.stop_request.exists():
                ctx.audit("approval_abandoned", request=request.request_id, gate=request.gate)
                return limits.cancelled(
                    interrupted=ctx.interrupt.is_set(),
                    when=f"while waiting for approval to {request.what}",
                )
            left = deadline - time.monotonic()
            if left <= 0:
                ctx.audit(
                    "approval_timed_out",
                    request=request.request_id,
                    gate=request.gate,
                    timeout=self._config.timeout,
                )
                ctx.emit("approval_timed_out", n, f"no decision on: {request.what}")
                return Stop(
                    StopReason.APPROVAL_TIMEOUT,
                    f"nobody approved or denied within {format_seconds(self._config.timeout)}: "
                    f"{request.what}",
                )
            # the agent's capabilities were issued once, for the whole run, and live a turn
            # plus a minute; a wait longer than that must not leave the next turn with dead
            # ones (no agent process runs now to use them)
            ctx.plan.access.renew(CAPABILITY_MARGIN)
            # an `outloop stop` (which sets cancel) wakes this wait at once
            ctx.cancel.wait(min(POLL_SECONDS, left))

    def _decided(self, n: int, request: _Request, decision: control.Decision) -> Stop | None:
        ctx = self._ctx
        fields: dict[str, object] = {
            "request": request.request_id,
            "gate": request.gate,
            "what": request.what,
            "who": decision.who,
            "decided_at": decision.at,
        }
        if decision.approved:
            ctx.audit("approval_granted", **fields, note=decision.text)
            if request.key is not None and request.key not in ctx.record.approved:
                ctx.record.approved.append(request.key)
            ctx.emit("approval_granted", n, f"{decision.who} approved: {request.what}")
            return None
        ctx.audit("approval_denied", **fields, reason=decision.text)
        ctx.emit("approval_denied", n, f"{decision.who} denied: {request.what}")
        because = f": {decision.text}" if decision.text else ""
        return Stop(
            StopReason.APPROVAL_DENIED,
            f"{decision.who} denied approval to {request.what}{because}",
        )

    def _drop_stale(self, current: str) -> None:
        """A decision for another request (one that timed out, or never was) approves nothing."""
        for path, decision in control.stale_decisions(self._ctx.paths, current):
            self._ctx.audit(
                "approval_decision_ignored",
                request=path.name[: -len(".json")][:80],
                pending=current,
                who=decision.who if decision else None,
                decision=decision.decision if decision else "unreadable",
                reason="the decision names a request the run is not waiting for",
            )
            path.unlink(missing_ok=True)
