"""``outloop stop``: ask a running run to stop, and say whether it has."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err

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
