"""What the dashboard's buttons do: the same functions the CLI verbs call, nothing else.

Stop is ``outloop stop``'s ``request_stop``; approve, deny and steer are
``outloop approve|deny|say``'s functions; resume starts ``outloop resume`` in
the background from the run's repository (it runs for as long as the run
does, like one typed in another terminal). Each acts on the run's own
repository, so the run index never has to guess which one is meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from outloop_cli.commands.approve import approve_run, deny_run, operator_name
from outloop_cli.commands.say import say_to_run
from outloop_cli.commands.stop import request_stop, run_is_alive
from outloop_cli.errors import UsageError
from outloop_cli.process.detached import start_outloop
from outloop_cli.store.records import StopReason
from outloop_cli.store.runs import RunStore
from outloop_cli.ui.sources import RunHandle


def _who() -> str:
    """Who the audit log names for a decision made on the page: the user serving it."""
    return f"{operator_name(None)} (dashboard)"


# how long a decision waits for the runner to take it before the page is told
_DECISION_WAIT = 10.0


@dataclass(frozen=True)
class ActionResult:
    """Whether an action on a run worked, and what to tell the user."""

    ok: bool
    message: str


def _usable(run: RunHandle) -> None:
    if run.problem is not None:
        state, why = run.problem
        raise UsageError(f"run {run.run_id} is {state}: {why}")


def stop(run: RunHandle) -> ActionResult:
    _usable(run)
    result = request_stop(run.repo_root, run.run_id, after_step=False, wait=None)
    return ActionResult(True, f"stop requested for run {result.run_id}")


def resume(run: RunHandle) -> ActionResult:
    _usable(run)
    record = RunStore(run.common_dir).load(run.run_id)
    if record.state.live and run_is_alive(record, run.paths):
        raise UsageError(f"run {run.run_id} is still running")
    if record.stop_reason is StopReason.GOAL_MET:
        raise UsageError(f"run {run.run_id} already met its goal; there is nothing to resume")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    log = run.paths.logs / f"ui-resume-{stamp}.log"
    pid = start_outloop(["resume", run.run_id], cwd=run.repo_root, log=log)
    return ActionResult(True, f"resuming run {run.run_id} (runner pid {pid})")


def _shown_request(request_id: str | None) -> str:
    """A decision from the page names the request it showed; the CLI may decide blind, not it."""
    if request_id is None:
        raise UsageError(
            "the decision names no approval request",
            hint="reload the page: it shows what the run waits for, and answers that",
        )
    return request_id


def approve(run: RunHandle, note: str | None, request_id: str | None) -> ActionResult:
    _usable(run)
    result = approve_run(
        run.repo_root,
        run.run_id,
        who=_who(),
        note=note,
        request_id=_shown_request(request_id),
        wait=_DECISION_WAIT,
    )
    taken = "taken by the run" if result.acknowledged else "written; the run has not taken it yet"
    return ActionResult(True, f"approved {result.what} ({taken})")


def deny(run: RunHandle, reason: str, request_id: str | None) -> ActionResult:
    _usable(run)
    if not reason.strip():
        raise UsageError("a denial needs a reason")
    result = deny_run(
        run.repo_root,
        run.run_id,
        who=_who(),
        reason=reason,
        request_id=_shown_request(request_id),
        wait=_DECISION_WAIT,
    )
    taken = "taken by the run" if result.acknowledged else "written; the run has not taken it yet"
    return ActionResult(True, f"denied {result.what} ({taken})")


def say(run: RunHandle, message: str) -> ActionResult:
    _usable(run)
    result = say_to_run(run.repo_root, run.run_id, message, who=_who())
    when = "its next turn" if result.live else "when it is resumed"
    return ActionResult(True, f"note queued for run {result.run_id}; the agent reads it {when}")
