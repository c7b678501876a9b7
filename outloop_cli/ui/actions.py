"""What the dashboard's buttons do: the same functions the CLI verbs call, nothing else.

Stop is ``outloop stop``'s ``request_stop``; resume starts ``outloop resume``
in the background from the run's repository (it runs for as long as the run
does); approve, deny and steer are ``outloop approve|deny|say``'s functions,
looked up by name so that a build without them shows the buttons disabled
(with the reason) instead of pretending to act.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from outloop_cli.commands.stop import request_stop, run_is_alive
from outloop_cli.errors import UsageError
from outloop_cli.process.detached import start_outloop
from outloop_cli.store.records import RunState, StopReason
from outloop_cli.store.runs import RunStore
from outloop_cli.ui.sources import RunHandle

WHO = "dashboard"

# action -> (module, function) of the command behind it
_GATED = {
    "approve": ("outloop_cli.commands.approve", "approve_run"),
    "deny": ("outloop_cli.commands.approve", "deny_run"),
    "say": ("outloop_cli.commands.say", "say_to_run"),
}


@dataclass(frozen=True)
class Availability:
    available: bool
    # why not, for the button's tooltip
    why: str | None = None


def _command(action: str) -> Callable[..., Any] | None:
    module_name, function = _GATED[action]
    if importlib.util.find_spec(module_name) is None:
        return None
    found: Callable[..., Any] | None = getattr(importlib.import_module(module_name), function, None)
    return found


def availability() -> dict[str, Availability]:
    result = {"stop": Availability(True), "resume": Availability(True)}
    for action, (module_name, _) in _GATED.items():
        verb = module_name.rsplit(".", 1)[1]
        result[action] = (
            Availability(True)
            if _command(action) is not None
            else Availability(False, f"this outloop has no `outloop {verb}` yet")
        )
    return result


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str


def stop(run: RunHandle) -> ActionResult:
    result = request_stop(run.repo_root, run.run_id, after_step=False, wait=None)
    return ActionResult(True, f"stop requested for run {result.run_id}")


def resume(run: RunHandle) -> ActionResult:
    record = RunStore(run.common_dir).load(run.run_id)
    if record.state is RunState.RUNNING and run_is_alive(record, run.paths):
        raise UsageError(f"run {run.run_id} is still running")
    if record.stop_reason is StopReason.GOAL_MET:
        raise UsageError(f"run {run.run_id} already met its goal; there is nothing to resume")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    log = run.paths.logs / f"ui-resume-{stamp}.log"
    pid = start_outloop(["resume", run.run_id], cwd=run.repo_root, log=log)
    return ActionResult(True, f"resuming run {run.run_id} (runner pid {pid})")


def _gated(action: str, run: RunHandle, *args: Any, **kwargs: Any) -> ActionResult:
    command = _command(action)
    if command is None:
        raise UsageError(availability()[action].why or f"`{action}` is not available")
    command(run.repo_root, run.run_id, *args, who=WHO, **kwargs)
    return ActionResult(True, f"{action}: done for run {run.run_id}")


def approve(run: RunHandle, note: str | None) -> ActionResult:
    return _gated("approve", run, note=note)


def deny(run: RunHandle, reason: str) -> ActionResult:
    if not reason.strip():
        raise UsageError("a denial needs a reason")
    return _gated("deny", run, reason=reason)


def say(run: RunHandle, message: str) -> ActionResult:
    if not message.strip():
        raise UsageError("say what? the message is empty")
    return _gated("say", run, message)
