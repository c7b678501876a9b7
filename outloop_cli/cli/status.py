"""``outloop status``: a table of this repository's runs, or one JSON object per run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from outloop_cli.cli.formatting import ago, duration, money, table
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_json

if TYPE_CHECKING:
    from outloop_cli.commands.status import RunSummary

_commands = CommandSet()
register = _commands.register


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
    """List this repository's runs (running, waiting for approval, stopped, crashed, finished) with iteration,
    phase, last goal result, cost and age."""
    from outloop_cli.commands.status import list_runs

    runs = list_runs(Path.cwd(), loop=loop)
    if as_json:
        for run in runs:
            out_json(run.as_json())
        return 0
    if not runs:
        err("no runs in this repository yet (start one with `outloop run`)")
        return 0
    out(table(_STATUS_HEADER, [_status_row(r) for r in runs]))
    return 0


_STATUS_HEADER = ("RUN", "LOOP", "STATE", "ITER", "PHASE/REASON", "GOAL", "COST", "AGE", "TIME")


def _status_row(run: RunSummary) -> list[str]:
    limit = f"/{run.max_iterations}" if run.max_iterations else ""
    doing = run.phase if run.state == "running" else run.stop_reason
    if run.state == "waiting_approval":
        gate = run.approval.get("gate") if run.approval else None
        doing = f"approve {gate}?" if gate else "approval"
    if run.state == "crashed":
        doing = f"died in {run.phase}" if run.phase else "died"
    return [
        run.run_id,
        run.loop,
        run.state,
        f"{run.iteration}{limit}" if run.state != "unreadable" else "-",
        doing or "-",
        _goal(run.goal, run.failing),
        money(run.cost_usd),
        ago(run.age),
        duration(run.duration),
    ]


def _goal(verdict: str | None, failing: int | None) -> str:
    if verdict is None:
        return "-"
    if verdict == "fail" and failing:
        return f"fail ({failing})"
    return verdict
