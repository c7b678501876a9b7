"""``outloop approve RUN`` and ``outloop deny RUN``: answer the request a run waits at.

A decision is a file in the run directory bound to the request id it
answers (``store/control.py``); the runner reads only the file of the
request it is waiting for, so an answer that arrives after its request
timed out, or that names an earlier one, approves nothing. The command then
waits a little for the runner to take it, and says whether it did.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.commands.run_ref import open_run
from outloop_cli.errors import UsageError
from outloop_cli.safe_text import one_line
from outloop_cli.store import control
from outloop_cli.store.locks import is_running
from outloop_cli.store.records import RunRecord, RunState
from outloop_cli.store.runs import RunPaths, RunStore
from outloop_cli.timefmt import now_iso

# how long the command waits for the runner to take its decision
DEFAULT_WAIT = 10.0


@dataclass(frozen=True)
class DecisionResult:
    """An ``outloop approve``/``deny`` answer to a run's request, and whether the runner took it."""

    run_id: str
    request_id: str
    gate: str
    what: str
    # "approve" or "deny"
    decision: str
    who: str
    # the runner took the decision within the wait (its record no longer waits for it)
    acknowledged: bool


def operator_name(as_name: str | None) -> str:
    """Who decides or speaks: ``--as NAME``, else the OS user."""
    if as_name is None:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"
    name = one_line(as_name)
    if not name or len(name) > control.MAX_NAME_CHARS:
        raise UsageError(
            f"--as needs a name of 1 to {control.MAX_NAME_CHARS} printable characters",
            hint="e.g. --as alice",
        )
    return name


def _open_run(cwd: Path, run_ref: str) -> tuple[RunStore, str, RunPaths]:
    """The run named from any directory: the repository at cwd first, then the run index."""
    run = open_run(cwd, run_ref)
    return run.store, run.run_id, run.paths


def approve_run(
    cwd: Path,
    run_ref: str,
    *,
    who: str,
    note: str | None,
    request_id: str | None = None,
    wait: float = DEFAULT_WAIT,
) -> DecisionResult:
    return _decide(cwd, run_ref, control.APPROVE, who, note, request_id, wait)


def deny_run(
    cwd: Path,
    run_ref: str,
    *,
    who: str,
    reason: str,
    request_id: str | None = None,
    wait: float = DEFAULT_WAIT,
) -> DecisionResult:
    if not reason.strip():
        raise UsageError("a denial needs a reason", hint='--reason "why not"')
    return _decide(cwd, run_ref, control.DENY, who, reason, request_id, wait)


def _decide(
    cwd: Path,
    run_ref: str,
    decision: str,
    who: str,
    text: str | None,
    request_id: str | None,
    wait: float,
) -> DecisionResult:
    store, run_id, paths = _open_run(cwd, run_ref)
    record = store.load(run_id)
    pending = _pending(record, paths)
    if request_id is not None and request_id != pending["id"]:
        raise UsageError(
            f"run {run_id} is not waiting for request {request_id} any more "
            f"(it waits for {pending['id']}: {one_line(str(pending.get('what')))})",
            hint="a decision answers one request; look again with `outloop show "
            f"{run_id}` and decide on the current one",
        )
    current = str(pending["id"])
    if control.decision_file(paths, current).exists():
        raise UsageError(
            f"request {current} of run {run_id} has already been answered",
            hint="the run takes the first decision; wait for it to go on",
        )
    if text is not None and len(text) > control.MAX_NOTE_CHARS:
        raise UsageError(f"the text is longer than {control.MAX_NOTE_CHARS} characters")
    control.write_decision(
        paths, control.Decision(current, decision, who, now_iso(), text if text else None)
    )
    acknowledged = _wait_taken(store, run_id, current, wait)
    return DecisionResult(
        run_id=run_id,
        request_id=current,
        gate=str(pending.get("gate")),
        what=str(pending.get("what")),
        decision=decision,
        who=who,
        acknowledged=acknowledged,
    )


def _pending(record: RunRecord, paths: RunPaths) -> dict[str, object]:
    run_id = record.run_id
    if record.state is not RunState.WAITING_APPROVAL or not record.approval:
        state = record.state.value + (f": {record.stop_reason.value}" if record.stop_reason else "")
        raise UsageError(
            f"run {run_id} is not waiting for an approval ({state})",
            hint=f"`outloop status` shows which runs wait; `outloop show {run_id}` shows this one",
        )
    if not is_running(paths):
        raise UsageError(
            f"run {run_id} was waiting for an approval, but its process is gone (crashed)",
            hint=f"`outloop resume {run_id}` continues it; it asks again",
        )
    return dict(record.approval)


def _wait_taken(store: RunStore, run_id: str, request_id: str, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        record = store.load(run_id)
        if not record.approval or record.approval.get("id") != request_id:
            return True
        if time.monotonic() >= deadline or not is_running(store.paths(run_id)):
            return False
        time.sleep(0.1)
