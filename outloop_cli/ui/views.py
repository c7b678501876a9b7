"""What the dashboard shows of a run, as plain JSON-able data, every string made safe.

Everything here was written by someone else (an agent's message, a goal's
output, file names, audit fields), so each string passes ``clean_text`` and a
length bound on its way out. The audit log is shown by an allow-list of
fields: kind, time and the decision, never a request's path, body or headers.
Logs and records are masked by the runner as they are written; this module
adds no secret source of its own and reads no work tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from outloop_cli.commands.status import failing_count, summarize
from outloop_cli.errors import GitError, OutloopError
from outloop_cli.git.history import commit_diff, is_sha
from outloop_cli.safe_text import clean_text, one_line
from outloop_cli.store.records import IterationRecord, RunRecord
from outloop_cli.store.runs import RunStore
from outloop_cli.ui.sources import RunHandle

_TAIL_BYTES = 8_000
_MESSAGE_CHARS = 8_000
_FIELD_CHARS = 200
_AUDIT_EVENTS = 300
_AUDIT_TAIL_BYTES = 512_000
_PATCH_BYTES = 200_000
_FAILING_NAMES = 20
# what an audit event may show besides its kind and time: who decided what, about which
# credential or iteration; never a path, query, header or body
AUDIT_FIELDS = (
    "iteration",
    "commit",
    "name",
    "workspace",
    "via",
    "decision",
    "reason",
    "status",
    "stop_reason",
    "who",
    "gate",
    "what",
    "awaiting",
    "dropped",
    "count",
)


def _text(value: object, limit: int = _FIELD_CHARS) -> str | None:
    if value is None:
        return None
    text = one_line(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _block(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    text = clean_text(value)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def load_record(run: RunHandle) -> RunRecord | None:
    if run.problem is not None:
        return None
    try:
        return RunStore(run.common_dir).load(run.run_id)
    except OutloopError:
        return None


def run_summary(run: RunHandle) -> dict[str, Any]:
    record = load_record(run)
    base: dict[str, Any] = {
        "id": _text(run.run_id),
        "repo": _text(run.repo_root),
        "workspace": _text(run.workspace),
    }
    if record is None:
        state, why = run.problem or ("unreadable", "its run.json cannot be read")
        return {
            **base,
            "state": state,
            "loop": _text(run.loop or "?"),
            "stop_detail": _text(why, 400),
        }
    summary = summarize(record, run.paths)
    approval = summary.approval or {}
    return {
        **base,
        "loop": _text(record.loop),
        "state": summary.state,
        "phase": _text(summary.phase),
        "iteration": summary.iteration,
        "max_iterations": summary.max_iterations,
        "goal": summary.goal,
        "failing": summary.failing,
        "cost_usd": summary.cost_usd,
        "tokens": record.tokens,
        "stop_reason": _text(summary.stop_reason),
        "stop_detail": _text(summary.stop_detail, 400),
        "started_at": _text(record.started_at),
        "age": summary.age,
        "duration": summary.duration,
        "branch": _text(record.branch),
        "agent": _text(record.agent_label),
        "goal_label": _text(record.goal_label),
        # what a run in waiting_approval waits for
        "awaiting": _text(approval.get("what"), 400) if approval else None,
        "awaiting_gate": _text(approval.get("gate")) if approval else None,
        # the request a decision from this page answers: a run that moved on is left waiting
        "awaiting_id": _text(approval.get("id")) if approval else None,
        "awaiting_until": _text(approval.get("timeout_at")) if approval else None,
    }


def _iteration(it: IterationRecord) -> dict[str, Any]:
    agent, goal = it.agent, it.goal
    judge = goal.judge if goal is not None else None
    # the judge's model calls are the iteration's spending too, as in the run's totals
    token_counts = [
        n
        for n in (
            agent.input_tokens if agent else None,
            agent.output_tokens if agent else None,
            judge.input_tokens if judge else None,
            judge.output_tokens if judge else None,
        )
        if n is not None
    ]
    tokens = sum(token_counts) if token_counts else None
    costs = [
        c
        for c in (agent.cost_usd if agent else None, judge.cost_usd if judge else None)
        if c is not None
    ]
    return {
        "n": it.n,
        "commit": it.commit if it.commit and is_sha(it.commit) else None,
        "verdict": None if goal is None else ("pass" if goal.met else "fail"),
        "failing": failing_count(goal) if goal is not None else None,
        "failing_names": [_text(n) for n in (goal.failing if goal else [])[:_FAILING_NAMES]],
        "goal_summary": _text(goal.summary if goal else None, 400),
        "duration": it.duration,
        "cost_usd": sum(costs) if costs else None,
        "tokens": tokens,
        "criteria": [
            {"criterion": _text(c.criterion, 200), "met": c.met, "reason": _text(c.reason, 400)}
            for c in (judge.criteria if judge else [])
        ],
        "agent_error": _text(agent.error if agent else None),
        "changed_files": len(it.changed_files),
        "finished": it.finished_at is not None,
    }


def run_details(run: RunHandle) -> dict[str, Any]:
    summary = run_summary(run)
    record = load_record(run)
    if record is None:
        return {"summary": summary, "iterations": [], "audit": audit_events(run)}
    last_message = next(
        (
            it.agent.final_message
            for it in reversed(record.iterations)
            if it.agent and it.agent.final_message
        ),
        None,
    )
    return {
        "summary": summary,
        "iterations": [_iteration(it) for it in record.iterations],
        "final_message": _block(last_message, _MESSAGE_CHARS),
        "goal_tail": goal_tail(run, record),
        "audit": audit_events(run),
    }


def goal_tail(run: RunHandle, record: RunRecord) -> dict[str, Any] | None:
    """The end of the latest goal output: its log file's tail, else the record's copy."""
    for it in reversed(record.iterations):
        goal = it.goal
        if goal is None:
            continue
        text = _log_tail(run.paths.root, goal.log) if goal.log else None
        if text is None:
            text = goal.output_tail
        return {"iteration": it.n, "text": _block(text, _TAIL_BYTES)}
    return None


def _log_tail(root: Path, relative: str) -> str | None:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        return None
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def _audit_tail(path: Path) -> list[dict[str, Any] | None]:
    """The last events of the log, read from its end (a long log is not read whole per look)."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - _AUDIT_TAIL_BYTES)
        handle.seek(start)
        data = handle.read()
    lines = data.split(b"\n")
    if start > 0:
        # the first line was cut by the seek
        lines = lines[1:]
    entries: list[dict[str, Any] | None] = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else None)
    return entries[-_AUDIT_EVENTS:]


def audit_events(run: RunHandle) -> list[dict[str, Any]]:
    try:
        entries = _audit_tail(run.paths.audit)
    except OSError:
        return []
    events: list[dict[str, Any]] = []
    for entry in entries:
        if entry is None:
            events.append({"seq": None, "time": None, "event": "unreadable line", "fields": {}})
            continue
        fields: dict[str, Any] = {}
        for key in AUDIT_FIELDS:
            value = entry.get(key)
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, (int, float)):
                fields[key] = value
            elif isinstance(value, str):
                fields[key] = _text(value)
        seq = entry.get("seq")
        events.append(
            {
                "seq": seq if isinstance(seq, int) else None,
                "time": _text(entry.get("time")),
                "event": _text(entry.get("event")),
                "fields": fields,
            }
        )
    return events


def iteration_diff(run: RunHandle, n: int) -> dict[str, Any] | None:
    """The files and patch of iteration ``n``'s commit, against the commit before it."""
    record = load_record(run)
    if record is None:
        return None
    previous = record.base_commit if is_sha(record.base_commit) else None
    for it in record.iterations:
        if it.n == n:
            break
        if it.commit and is_sha(it.commit):
            previous = it.commit
    else:
        return None
    if not it.commit or not is_sha(it.commit):
        return {"n": n, "commit": None, "files": [], "patch": "", "truncated": False}
    git_dir = run.paths.own_git_dir if run.paths.own_git_dir.is_dir() else run.common_dir
    try:
        diff = commit_diff(git_dir, previous, it.commit, max_bytes=_PATCH_BYTES)
    except GitError as exc:
        return {"n": n, "commit": it.commit, "error": _text(exc.message, 400)}
    return {
        "n": n,
        "commit": it.commit,
        "files": [{"status": f.status, "path": _text(f.path, 500)} for f in diff.files],
        "patch": clean_text(diff.patch),
        "truncated": diff.truncated,
    }


def dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False)
