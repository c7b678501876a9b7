"""``outloop demo``: a real loop on a bundled project, with a scripted stand-in agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out

_commands = CommandSet()
register = _commands.register


@_commands.command("demo")
def demo_command(
    directory: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--dir", help="Where to create the demo repository (default: a new temp dir)."
        ),
    ] = None,
    agency: Annotated[
        bool,
        typer.Option(
            "--agency",
            help="Run the agency example instead: three client repos, each with its own CRM "
            "and key, synced at once; shows that one client's loop cannot reach another's CRM.",
        ),
    ] = False,
    secrets_from: Annotated[
        str,
        typer.Option(
            "--secrets",
            help="With --agency: where the CRM keys are stored. auto: a private Secret "
            "Service if gnome-keyring is installed, else CI variables; keyring; ci.",
        ),
    ] = "auto",
) -> int:
    """Run a real loop on a bundled project with a scripted stand-in agent."""
    if agency:
        from outloop_cli.cli.agency_report import run_agency

        return run_agency(directory, secrets_from)
    from outloop_cli.cli.progress import make_progress
    from outloop_cli.commands.demo import demo_log, prepare_demo
    from outloop_cli.commands.run import combined_exit_code, execute_plans, plan_loops
    from outloop_cli.engine.plan import RunOptions

    repo = prepare_demo(directory)
    err(f"demo repository: {repo}")
    err(
        "agent: outloop's demo agent, a scripted stand-in for an LLM coding agent (no model, no network)"
    )
    options = RunOptions()
    plans = plan_loops(repo, ["fix-tests"], options)
    with make_progress() as progress:
        outcomes = execute_plans(plans, options, observer=progress)
    for outcome in outcomes:
        record = outcome.record
        err(
            f"\nstopped: {record.stop_reason.value if record.stop_reason else '?'} — {record.stop_detail}"
        )
        err(f"git log of {record.branch}:")
        out(demo_log(repo, record.branch, record.base_commit))
        err(f"summary: {outcome.paths.summary}")
    return combined_exit_code(outcomes)
