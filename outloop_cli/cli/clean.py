"""``outloop clean``: remove finished runs' worktrees (and with ``--all`` their records).

What is removed, skipped or left alone is said on stderr, one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err

if TYPE_CHECKING:
    from outloop_cli.commands.clean import CleanPlan, CleanResult

_commands = CommandSet()
register = _commands.register


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
        what = "worktree " + str(target.worktree) if target.has_worktree else "no worktree"
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
