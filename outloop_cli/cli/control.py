"""CLI commands that steer a run from outside: stop, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet, err

_commands = CommandSet()
register = _commands.register


@_commands.command("stop")
def stop_command(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    after_step: Annotated[
        bool,
        typer.Option("--after-step", help="Let the current step finish instead of killing it."),
    ] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the run to stop (0: don't).")
    ] = 60.0,
) -> int:
    """Ask a running run to stop; it commits what exists and records `stopped`."""
    from outloop_cli.commands.stop import request_stop

    result = request_stop(Path.cwd(), run, after_step=after_step, wait=wait)
    how = "after the current step" if after_step else "now"
    if not wait:
        err(f"stop requested for run {result.run_id} ({how})")
        return 0
    if result.stopped:
        record = result.record
        reason = record.stop_reason.value if record.stop_reason else record.state.value
        err(f"run {result.run_id} stopped: {reason} — {record.stop_detail}")
        return 0
    err(f"stop requested for run {result.run_id} ({how}); it has not stopped yet")
    return 1


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
    from outloop_cli.cli.core import run_and_report
    from outloop_cli.commands.resume import plan_resume_run
    from outloop_cli.engine.run import RunOptions

    options = RunOptions(max_iterations=max_iterations, out_dir=out, policy=policy)
    resumed = plan_resume_run(Path.cwd(), run, options)
    return run_and_report([resumed.plan], options, as_json=as_json, resume=resumed.record)
