"""``outloop say RUN "message"``: a note from the operator for the run's next agent turn.

The note waits in the run directory (``store/control.py``) until the runner
takes it for the next turn's prompt; notes are taken in the order they were
said, each exactly once, by this runner or a resumed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.commands.run_ref import open_run
from outloop_cli.errors import UsageError
from outloop_cli.safe_text import clean_text
from outloop_cli.store import control
from outloop_cli.store.locks import effective_state
from outloop_cli.store.records import StopReason
from outloop_cli.store.runs import RunPaths, RunStore
from outloop_cli.timefmt import now_iso


@dataclass(frozen=True)
class SayResult:
    """A note ``outloop say`` queued for the run's next agent turn."""

    run_id: str
    note_id: str
    who: str
    # notes waiting for the next turn, this one included
    queued: int
    # the run's process is alive now (else the note waits for `outloop resume`)
    live: bool


def _open_run(cwd: Path, run_ref: str) -> tuple[RunStore, str, RunPaths]:
    """The run named from any directory: the repository at cwd first, then the run index."""
    run = open_run(cwd, run_ref)
    return run.store, run.run_id, run.paths


def say_to_run(cwd: Path, run_ref: str, message: str, *, who: str) -> SayResult:
    store, run_id, paths = _open_run(cwd, run_ref)
    record = store.load(run_id)
    text = clean_text(message).strip()
    if not text:
        raise UsageError("the note is empty", hint='outloop say RUN "what the agent should know"')
    if len(text) > control.MAX_NOTE_CHARS:
        raise UsageError(
            f"the note is {len(text)} characters; at most {control.MAX_NOTE_CHARS} fit in a turn",
            hint="say it shorter, or put the details in a file the loop's prompt points to",
        )
    state = effective_state(record, paths)
    if record.stop_reason is StopReason.GOAL_MET:
        raise UsageError(
            f"run {run_id} met its goal and will take no more turns",
            hint="start a new run with `outloop run`",
        )
    live = state.live
    waiting = len(control.queued_notes(paths))
    if waiting >= control.MAX_QUEUED_NOTES:
        raise UsageError(
            f"{waiting} notes already wait for run {run_id}'s next turn",
            hint="let the run take them first",
        )
    note = control.queue_note(paths, who=who, at=now_iso(), text=text)
    return SayResult(run_id, note.note_id, who, waiting + 1, live)
