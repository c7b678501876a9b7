"""Operator notes (``outloop say``): taken from the inbox for the next agent turn.

Each note is claimed once (``store/control.py`` moves it out of the inbox),
audited with who said it and when, kept in the iteration's record (the
commit body quotes it from there) and handed to the prompt, which frames it
as the operator's words. A resumed run takes the notes still waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outloop_cli.safe_text import clean_text
from outloop_cli.store import control

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext


def deliver_notes(ctx: RunContext, n: int) -> list[control.OperatorNote]:
    """The notes said since the last turn, oldest first, each taken out of the inbox."""
    notes = []
    for raw in control.claim_notes(ctx.paths, n):
        text = clean_text(raw.text).strip()
        if ctx.masker is not None:
            text = ctx.masker.mask_text(text)
        if not text:
            continue
        note = control.OperatorNote(raw.note_id, raw.who, raw.at, text)
        notes.append(note)
        ctx.audit(
            "operator_note_delivered",
            iteration=n,
            note=note.note_id,
            who=note.who,
            said_at=note.at,
            text=note.text,
        )
        ctx.note(n, f"operator note from {note.who} handed to this turn")
    if notes and ctx.record.iterations and ctx.record.iterations[-1].n == n:
        ctx.record.iterations[-1].operator_notes = [note.as_dict() for note in notes]
    return notes
