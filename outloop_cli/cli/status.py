"""``outloop status``: a table of this repository's runs, or one JSON object per run.

Its options are plain (``cli/plain_options.py``): prompts and watch loops call
it again and again, and the common command lines run without typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

from outloop_cli.cli.formatting import ago, duration, money, table
from outloop_cli.cli.plain_options import PlainOption
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_json
from outloop_cli.safe_text import one_line

if TYPE_CHECKING:
    from outloop_cli.commands.status import MachineRun, RunSummary

_commands = CommandSet()
register = _commands.register


@_commands.command("status")
def status_command(
    loop: Annotated[
        Optional[str],  # noqa: UP045
        PlainOption("--loop", help="Only runs of this loop."),
    ] = None,
    every_repo: Annotated[
        bool,
        PlainOption(
            "--all",
            help="Every run on this machine, from any directory: the run index under "
            "$XDG_STATE_HOME/outloop/index (a run whose repository was deleted shows as gone).",
        ),
    ] = False,
    as_json: Annotated[
        bool, PlainOption("--json", help="One JSON object per run on stdout.")
    ] = False,
) -> int:
    """List this repository's runs (running, waiting for approval, stopped, crashed, finished) with iteration,
    phase, last goal result, cost and age."""
    if every_repo:
        return _status_all(loop, as_json=as_json)
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


def _status_all(loop: str | None, *, as_json: bool) -> int:
    from outloop_cli.commands.status import list_all_runs

    rows = list_all_runs(loop=loop)
    if as_json:
        for row in rows:
            out_json(row.as_json())
        return 0
    if not rows:
        err("no runs on this machine yet (each `outloop run` registers the runs it starts)")
        return 0
    out(table(_ALL_HEADER, [_all_row(row) for row in rows]))
    # why a run cannot be shown, below the table where a long reason does not widen it
    for row in rows:
        if row.summary.state in ("unreadable", "gone") and row.summary.stop_detail:
            err(f"{row.summary.run_id}: {row.summary.state}: {one_line(row.summary.stop_detail)}")
    return 0


_ALL_HEADER = ("RUN", "REPO", "WORKSPACE", "LOOP", "STATE", "ITER", "GOAL", "COST", "AGE")


def _all_row(row: MachineRun) -> list[str]:
    run = row.summary
    cells = _status_row(run)
    state = run.state
    if run.state == "stopped" or run.state == "finished":
        state += f" ({run.stop_reason})" if run.stop_reason else ""
    elif run.state == "crashed":
        state = f"crashed in {run.phase}" if run.phase else "crashed"
    return [
        run.run_id,
        _short_path(row.repo),
        row.workspace or "-",
        run.loop,
        state,
        cells[3] if run.state not in ("unreadable", "gone") else "-",
        cells[5],
        cells[6],
        cells[7],
    ]


def _short_path(path: str) -> str:
    home = str(Path.home())
    if path == home or path.startswith(home + "/"):
        return "~" + path[len(home) :]
    return path


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
