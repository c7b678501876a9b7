"""The files through which a human steers a live run: approval decisions and operator notes.

The runner and the commands (``outloop approve``, ``deny``, ``say``) share
nothing but the run directory, as ``outloop stop`` and its ``stop-requested``
file do. Each file is written whole by rename (``store/atomic.py``), so the
runner, which polls, reads a decision or a note entirely or not at all.

- A decision names the request it answers, in its file name and in its
  content: ``approvals/<request-id>.json``. The runner reads only the file of
  the request it is waiting for, so a decision meant for an earlier request
  can never approve a later one.
- A note is ``say/<time-ns>-<random>.json``: names sort in the order the notes
  were said. The runner claims a note by renaming it into ``say/delivered/``
  before the turn that shows it starts; a claimed note is never shown again,
  by this runner or by a resumed one.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outloop_cli.store.atomic import atomic_write_json, move_file
from outloop_cli.store.runs import RunPaths

APPROVE = "approve"
DENY = "deny"
# what a decision file may hold: a decision is a few words, not a document
MAX_DECISION_BYTES = 16 * 1024
# an operator note is a paragraph or two for the agent's next turn
MAX_NOTE_CHARS = 4000
# notes waiting at once: more is a flood, not steering
MAX_QUEUED_NOTES = 50
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class Decision:
    """An operator's answer to an approval request."""

    request_id: str
    decision: str
    who: str
    at: str
    # the approver's note, or the reason of a denial
    text: str | None

    @property
    def approved(self) -> bool:
        return self.decision == APPROVE


@dataclass(frozen=True)
class OperatorNote:
    """A note an operator sent a running loop with `outloop say`."""

    note_id: str
    who: str
    at: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.note_id, "who": self.who, "at": self.at, "text": self.text}


def new_request_id() -> str:
    return f"apr-{secrets.token_hex(6)}"


def decision_file(paths: RunPaths, request_id: str) -> Path:
    return paths.approvals / f"{request_id}.json"


def write_decision(paths: RunPaths, decision: Decision) -> None:
    atomic_write_json(
        decision_file(paths, decision.request_id),
        {
            "request": decision.request_id,
            "decision": decision.decision,
            "who": decision.who,
            "at": decision.at,
            "text": decision.text,
        },
    )


def read_decision(paths: RunPaths, request_id: str) -> Decision | None:
    """The decision on ``request_id``, once one was written; None before (or if unreadable)."""
    data = _read_json(decision_file(paths, request_id))
    if data is None or data.get("request") != request_id:
        return None
    decision = data.get("decision")
    if decision not in (APPROVE, DENY):
        return None
    text = data.get("text")
    return Decision(
        request_id=request_id,
        decision=str(decision),
        who=str(data.get("who") or "?")[:MAX_NAME_CHARS],
        at=str(data.get("at") or "")[:40],
        text=str(text)[:MAX_NOTE_CHARS] if text is not None else None,
    )


def stale_decisions(paths: RunPaths, current: str | None) -> list[tuple[Path, Decision | None]]:
    """Decision files for requests other than ``current``: answers that came too late."""
    found: list[tuple[Path, Decision | None]] = []
    try:
        entries = sorted(paths.approvals.glob("apr-*.json"))
    except OSError:
        return []
    for path in entries:
        request_id = path.name[: -len(".json")]
        if request_id == current:
            continue
        found.append((path, read_decision(paths, request_id)))
    return found


def queue_note(paths: RunPaths, *, who: str, at: str, text: str) -> OperatorNote:
    note_id = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
    note = OperatorNote(note_id, who, at, text)
    atomic_write_json(paths.notes_inbox / f"{note_id}.json", note.as_dict())
    return note


def queued_notes(paths: RunPaths) -> list[Path]:
    try:
        return sorted(p for p in paths.notes_inbox.glob("*.json") if p.is_file())
    except OSError:
        return []


def claim_notes(paths: RunPaths, iteration: int) -> list[OperatorNote]:
    """Take every waiting note, oldest first; each is moved out of the inbox as it is taken."""
    claimed: list[OperatorNote] = []
    target = paths.notes_inbox / "delivered"
    for path in queued_notes(paths):
        data = _read_json(path, limit=MAX_NOTE_CHARS * 4 + 4096)
        target.mkdir(parents=True, exist_ok=True)
        destination = target / f"iter-{iteration:03d}-{path.name}"
        # the rename is the claim: a note taken once is not in the inbox any more
        if not move_file(path, destination):
            continue
        if data is None or not isinstance(data.get("text"), str):
            continue
        claimed.append(
            OperatorNote(
                note_id=str(data.get("id") or path.stem)[:80],
                who=str(data.get("who") or "?")[:MAX_NAME_CHARS],
                at=str(data.get("at") or "")[:40],
                text=str(data["text"])[:MAX_NOTE_CHARS],
            )
        )
    return claimed


def _read_json(path: Path, limit: int = MAX_DECISION_BYTES) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError:
        return None
    if len(raw) > limit:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
