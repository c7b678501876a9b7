"""``outloop show RUN``: a run's facts, then a table of its iterations (or one JSON object)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outloop_cli.cli.formatting import ago, duration, money, table
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import out, out_json
from outloop_cli.safe_text import one_line

if TYPE_CHECKING:
    from outloop_cli.commands.show import IterationRow, RunDetails

_commands = CommandSet()
register = _commands.register


@_commands.command("show")
def show_command(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The run as one JSON object on stdout.")
    ] = False,
) -> int:
    """Show one run: its facts, then each iteration's commit, goal result, duration, cost."""
    from outloop_cli.commands.show import show_run

    details = show_run(Path.cwd(), run)
    if as_json:
        out_json(details.as_json())
        return 0
    out(_render_details(details))
    return 0


def _render_details(details: RunDetails) -> str:
    summary, record = details.summary, details.record
    state = summary.state
    if state == "running":
        state += f" — iteration {summary.iteration}, {summary.phase or 'starting'}"
        if record.pid:
            state += f" (pid {record.pid}{' on ' + record.host if record.host else ''})"
    elif state == "waiting_approval" and summary.approval:
        state += f" — iteration {summary.iteration}, {_awaiting(summary.approval)}"
    elif state == "crashed":
        state += " — its process died; `outloop resume " + record.run_id + "` continues it"
    elif record.stop_reason is not None:
        state += f" — {record.stop_reason.value}"
    worktree = record.worktree + ("" if details.worktree_exists else "  (removed)")
    taken_from = (record.worktree_origin or {}).get("reused_from")
    if isinstance(taken_from, str):
        worktree += f"  (taken over from run {one_line(taken_from)})"
    facts = [
        ("run", record.run_id),
        ("repo", record.repo_root),
        ("loop", record.loop + (f" — {record.description}" if record.description else "")),
        ("state", state),
        ("detail", record.stop_detail or ""),
        ("branch", record.branch),
        ("worktree", worktree),
        ("base", record.base_commit[:12]),
        ("agent", record.agent_label),
        ("goal", record.goal_label),
        ("started", f"{record.started_at} ({ago(summary.age)})"),
        ("duration", duration(summary.duration)),
        ("cost", money(summary.cost_usd)),
        ("audit", str(details.paths.audit)),
    ]
    if summary.approval:
        request = summary.approval
        facts.insert(
            3,
            (
                "approval",
                f"request {request.get('id')}: `outloop approve {record.run_id}` or "
                f"`outloop deny {record.run_id} --reason …` (times out {request.get('timeout_at')})",
            ),
        )
    notes = [(it.n, note) for it in record.iterations for note in it.operator_notes]
    width = max(len(name) for name, _ in facts)
    lines = [f"{name:<{width}}  {value}" for name, value in facts if value]
    if details.iterations:
        lines.append("")
        lines.append(table(_SHOW_HEADER, [_iteration_row(row) for row in details.iterations]))
    if notes:
        lines += ["", "operator notes (`outloop say`):"]
        lines += [
            f"  iteration {n}: {one_line(str(note.get('who')))} at {note.get('at')}: "
            + one_line(str(note.get("text")))[:200]
            for n, note in notes
        ]
    return "\n".join(lines)


def _awaiting(approval: dict[str, Any]) -> str:
    """``waiting for approval to push … since 10:02:03``, from the record's request."""
    return f"waiting for approval to {one_line(str(approval.get('what')))} since {approval.get('since')}"


_SHOW_HEADER = ("N", "COMMIT", "FILES", "AGENT", "GOAL", "FAILING", "TIME", "COST")


def _iteration_row(row: IterationRow) -> list[str]:
    if row.n == 0:
        agent = "(baseline)"
    elif row.agent_duration is None:
        agent = "working…" if row.in_progress else "-"
    else:
        agent = f"exit {row.agent_exit if row.agent_exit is not None else '-'}"
        if row.agent_error:
            agent += f" ({row.agent_error})"
        agent += f" {duration(row.agent_duration)}"
    goal = row.goal or ("…" if row.in_progress else "-")
    return [
        str(row.n),
        row.commit[:10] if row.commit else "-",
        str(row.changed_files) if row.n else "-",
        agent,
        goal,
        str(row.failing) if row.failing is not None else "-",
        "…" if row.in_progress else duration(row.duration),
        money(row.cost_usd),
    ]
