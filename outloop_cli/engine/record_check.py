"""Before a resume: the run's record is believed only where its sealed audit log agrees.

``run.json`` says which commit the run started from, so which loop file, goal
and limits the resumed run obeys. An agent outside a sandbox can edit it;
the audit log's first event says the same things, and that log is sealed
line by line with the run's key, which the agent never sees. So a resume
goes on only when the log is intact under that key and its ``run_started``
names the same loop, base commit, branch and worktree as the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outloop_cli.credentials.run_key import load_run_key, run_keys_dir
from outloop_cli.errors import CouldNotRun
from outloop_cli.store.audit import sealed, trusted_events

if TYPE_CHECKING:
    from outloop_cli.store.records import RunRecord
    from outloop_cli.store.runs import RunPaths

_CHECKED = (
    ("loop", "loop"),
    ("base_commit", "base"),
    ("branch", "branch"),
    ("worktree", "worktree"),
)


def check_record_against_log(record: RunRecord, paths: RunPaths) -> None:
    """CouldNotRun unless the record's decisive fields are the sealed log's own."""
    run_id = record.run_id
    hint = "the run's records were changed outside outloop; start a new run (`outloop run`)"
    if not paths.audit.is_file():
        raise CouldNotRun(
            f"run {run_id} has no audit log ({paths.audit}) to resume from", hint=hint
        )
    key = load_run_key(run_id)
    is_sealed = sealed(paths.audit)
    if key is None and is_sealed:
        raise CouldNotRun(
            f"run {run_id}'s key is gone ({run_keys_dir()}/{run_id}.key), so its records "
            "cannot be told from rewritten ones",
            hint="start a new run; the key lives in outloop's state directory",
        )
    if key is not None and not is_sealed:
        raise CouldNotRun(
            f"run {run_id}'s audit log is not sealed with its key: it was replaced", hint=hint
        )
    events, problem = trusted_events(paths.audit, run_id, key.verify if key is not None else None)
    if problem is not None:
        raise CouldNotRun(f"run {run_id}'s audit log cannot be trusted: {problem}", hint=hint)
    started = next((e for e in events if e.get("event") == "run_started"), None)
    if started is None:
        raise CouldNotRun(f"run {run_id}'s audit log has no `run_started` event", hint=hint)
    for field, logged in _CHECKED:
        claimed = getattr(record, field)
        if started.get(logged) != claimed:
            raise CouldNotRun(
                f"run.json says {field} {claimed!r}, but run {run_id}'s sealed audit log "
                f"says {started.get(logged)!r}: run.json was edited",
                hint=hint,
            )
