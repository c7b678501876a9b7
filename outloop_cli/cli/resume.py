"""``outloop resume``: continue a stopped or crashed run, reported as ``outloop run`` reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet

_commands = CommandSet()
register = _commands.register


@_commands.command("resume")
def resume_command(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    max_iterations: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-iterations", min=1, help="A new total iteration limit."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Copy reports into DIR/<run-id>/.")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", envvar="OUTLOOP_POLICY", help="Workspace policy file."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run as one JSON object on stdout.")
    ] = False,
) -> int:
    """Continue a stopped or crashed run from its last committed iteration."""
    from outloop_cli.cli.run import run_and_report
    from outloop_cli.commands.resume import plan_resume_run
    from outloop_cli.engine.plan import RunOptions

    options = RunOptions(max_iterations=max_iterations, out_dir=out, policy=policy)
    resumed = plan_resume_run(Path.cwd(), run, options)
    return run_and_report([resumed.plan], options, as_json=as_json, resume=resumed.record)
