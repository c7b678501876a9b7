"""CLI commands about runs: status, show, clean.

Tables go to stdout (they are the command's output), one JSON object per
line with ``--json``; notes and hints go to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet, err

if TYPE_CHECKING:
    from outloop_cli.commands.clean import CleanPlan, CleanResult
    from outloop_cli.commands.show import IterationRow, RunDetails
    from outloop_cli.commands.status import RunSummary

_commands = CommandSet()
register = _commands.register


# -- status ---------------------------------------------------------------------


@_commands.command("status")
def status_command(
    loop: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--loop", help="Only runs of this loop."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per run on stdout.")
    ] = False,
) -> int:
    """List this repository's runs (running, stopped, crashed, finished) with iteration,
    phase, last goal result, cost and age."""
    from outloop_cli.commands.status import list_runs

    runs = list_runs(Path.cwd(), loop=loop)
    if as_json:
        for run in runs:
            typer.echo(json.dumps(run.as_json()))
        return 0
    if not runs:
        err("no runs in this repository yet (start one with `outloop run`)")
        return 0
    typer.echo(_table(_STATUS_HEADER, [_status_row(r) for r in runs]))
    return 0


_STATUS_HEADER = ("RUN", "LOOP", "STATE", "ITER", "PHASE/REASON", "GOAL", "COST", "AGE", "TIME")


def _status_row(run: RunSummary) -> list[str]:
    limit = f"/{run.max_iterations}" if run.max_iterations else ""
    doing = run.phase if run.state == "running" else run.stop_reason
    if run.state == "crashed":
        doing = f"died in {run.phase}" if run.phase else "died"
    return [
        run.run_id,
        run.loop,
        run.state,
        f"{run.iteration}{limit}" if run.state != "unreadable" else "-",
        doing or "-",
        _goal(run.goal, run.failing),
        _cost(run.cost_usd),
        _ago(run.age),
        _seconds(run.duration),
    ]


# -- show -----------------------------------------------------------------------


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
        typer.echo(json.dumps(details.as_json(), ensure_ascii=False))
        return 0
    typer.echo(_render_details(details))
    return 0


def _render_details(details: RunDetails) -> str:
    summary, record = details.summary, details.record
    state = summary.state
    if state == "running":
        state += f" — iteration {summary.iteration}, {summary.phase or 'starting'}"
        if record.pid:
            state += f" (pid {record.pid}{' on ' + record.host if record.host else ''})"
    elif state == "crashed":
        state += " — its process died; `outloop resume " + record.run_id + "` continues it"
    elif record.stop_reason is not None:
        state += f" — {record.stop_reason.value}"
    worktree = record.worktree + ("" if details.worktree_exists else "  (removed)")
    facts = [
        ("run", record.run_id),
        ("loop", record.loop + (f" — {record.description}" if record.description else "")),
        ("state", state),
        ("detail", record.stop_detail or ""),
        ("branch", record.branch),
        ("worktree", worktree),
        ("base", record.base_commit[:12]),
        ("agent", record.agent_label),
        ("goal", record.goal_label),
        ("started", f"{record.started_at} ({_ago(summary.age)})"),
        ("duration", _seconds(summary.duration)),
        ("cost", _cost(summary.cost_usd)),
        ("audit", str(details.paths.audit)),
    ]
    width = max(len(name) for name, _ in facts)
    lines = [f"{name:<{width}}  {value}" for name, value in facts if value]
    if details.iterations:
        lines.append("")
        lines.append(_table(_SHOW_HEADER, [_iteration_row(row) for row in details.iterations]))
    return "\n".join(lines)


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
        agent += f" {_seconds(row.agent_duration)}"
    goal = row.goal or ("…" if row.in_progress else "-")
    return [
        str(row.n),
        row.commit[:10] if row.commit else "-",
        str(row.changed_files) if row.n else "-",
        agent,
        goal,
        str(row.failing) if row.failing is not None else "-",
        "…" if row.in_progress else _seconds(row.duration),
        _cost(row.cost_usd),
    ]


# -- clean ----------------------------------------------------------------------


@_commands.command("clean")
def clean_command(
    drop_records: Annotated[
        bool,
        typer.Option("--all", help="Also delete the runs' records (after confirmation)."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; change nothing.")
    ] = False,
) -> int:
    """Remove the worktrees of runs that are over (branches stay); --all drops records too."""
    from outloop_cli.commands.clean import execute_clean, plan_clean

    plan = plan_clean(Path.cwd())
    for run_id in plan.running:
        err(f"skipped {run_id}: it is running")
    for run_id, why in plan.unreadable.items():
        err(f"skipped {run_id}: {why}")
    if dry_run:
        _describe_plan(plan, drop_records=drop_records)
        return 0
    if drop_records and plan.targets and not yes:
        _describe_plan(plan, drop_records=True)
        if not _confirm(f"delete the records of {len(plan.targets)} run(s)?"):
            err("nothing was removed (pass --yes to skip this question)")
            return 1
    result = execute_clean(plan, drop_records=drop_records)
    _report_clean(result)
    return 1 if result.failed else 0


def _describe_plan(plan: CleanPlan, *, drop_records: bool) -> None:
    for target in plan.targets:
        what = "worktree " + str(target.worktree) if target.registered else "no worktree"
        if drop_records:
            what += " and its record"
        err(f"would remove {target.run_id} ({target.state}): {what}")
    if not plan.targets:
        err("no finished runs to clean")
    else:
        err("branches stay: `git branch --list 'outloop/*'` shows them")


def _confirm(question: str) -> bool:
    try:
        return bool(typer.confirm(question, default=False, err=True))
    except typer.Abort:
        # no answer at all (stdin closed, as in CI without --yes): that is a no
        err("")
        return False


def _report_clean(result: CleanResult) -> None:
    for target in result.removed:
        discarded = result.discarded.get(target.run_id, 0)
        extra = f" ({discarded} uncommitted path(s) discarded)" if discarded else ""
        err(f"removed worktree of {target.run_id} ({target.state}): {target.worktree}{extra}")
    for target in result.left_alone:
        err(
            f"left {target.worktree} alone: it is not a worktree of this repository "
            f"(run {target.run_id})"
        )
    for run_id in result.became_running:
        err(f"skipped {run_id}: it started running meanwhile")
    for run_id, why in result.failed.items():
        err(f"could not remove the worktree of {run_id}: {why}")
    for run_id in result.records_dropped:
        err(f"deleted the record of {run_id}")
    if not result.removed and not result.records_dropped:
        err("nothing to clean")
    elif result.records_dropped:
        err("branches stay: `git branch --list 'outloop/*'` shows them")
    else:
        err("branches and records stay; `outloop clean --all` also deletes records")


# -- formatting -----------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _goal(verdict: str | None, failing: int | None) -> str:
    if verdict is None:
        return "-"
    if verdict == "fail" and failing:
        return f"fail ({failing})"
    return verdict


def _cost(cost: float | None) -> str:
    return f"${cost:.2f}" if cost is not None else "-"


def _seconds(value: float | None) -> str:
    from outloop_cli.timefmt import format_seconds

    return format_seconds(value) if value is not None else "-"


def _ago(age: float | None) -> str:
    if age is None:
        return "-"
    if age < 60:
        return f"{int(age)}s ago"
    if age < 3600:
        return f"{int(age // 60)}m ago"
    if age < 86400 * 2:
        return f"{int(age // 3600)}h ago"
    return f"{int(age // 86400)}d ago"
