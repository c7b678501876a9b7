"""``outloop stop``: ask a running run, from outside, to stop and wait until it has."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.commands.run_ref import open_run
from outloop_cli.errors import UsageError
from outloop_cli.store.atomic import atomic_write_text
from outloop_cli.store.locks import is_running
from outloop_cli.store.records import RunRecord
from outloop_cli.store.runs import RunPaths


@dataclass(frozen=True)
class StopResult:
    """The answer to ``outloop stop``: the run's record, and whether it stopped within the wait."""

    run_id: str
    record: RunRecord
    # False when the run did not finish within the wait (or waiting was not asked for)
    stopped: bool


def run_is_alive(record: RunRecord, paths: RunPaths) -> bool:
    """Is the process that owns this run still there? (its run lock is held)"""
    return record.state.live and is_running(paths)


def request_stop(cwd: Path, run_ref: str, *, after_step: bool, wait: float | None) -> StopResult:
    run = open_run(cwd, run_ref)
    store, run_id, paths = run.store, run.run_id, run.paths
    record = store.load(run_id)
    if not record.state.live:
        raise UsageError(
            f"run {run_id} is not running ({_state_words(record)})",
            hint=f"`outloop resume {run_id}` continues it",
        )
    if not run_is_alive(record, paths):
        raise UsageError(
            f"run {run_id} is not running: its process is gone (crashed)",
            hint=f"`outloop resume {run_id}` continues it from its last commit",
        )
    atomic_write_text(paths.stop_request, "after-step\n" if after_step else "now\n")
    if not wait:
        return StopResult(run_id, record, stopped=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        record = store.load(run_id)
        if not record.state.live:
            return StopResult(run_id, record, stopped=True)
        if not run_is_alive(record, paths):
            return StopResult(run_id, record, stopped=False)
        time.sleep(0.1)
    return StopResult(run_id, store.load(run_id), stopped=False)


def _state_words(record: RunRecord) -> str:
    if record.stop_reason is None:
        return record.state.value
    return f"{record.state.value}: {record.stop_reason.value}"
