"""``outloop action-report`` (hidden): the last step of ``action.yml``.

Step outputs and the step summary go to the files GitHub names in the
environment; annotations go to stdout as workflow commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from outloop_cli.cli import terminal
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err

_commands = CommandSet()
register = _commands.register


@_commands.command("action-report", hidden=True)
def action_report_command(
    runs: Annotated[Path, typer.Option("--runs", help="File with `outloop run --json` output.")],
    exit_code: Annotated[int, typer.Option("--exit-code", help="Exit code of `outloop run`.")],
    out: Annotated[Path, typer.Option("--out", help="The --out directory of the run.")],
) -> int:
    """For action.yml: step outputs, step summary and annotations from `outloop run --json`."""
    import os

    from outloop_cli.commands.action_report import (
        append_summary,
        build_report,
        read_runs,
        write_outputs,
    )

    report = build_report(read_runs(runs), exit_code, out)
    output_file = os.environ.get("GITHUB_OUTPUT")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if output_file:
        write_outputs(Path(output_file), report.outputs)
    else:
        err("GITHUB_OUTPUT is not set; outputs: " + json.dumps(report.outputs))
    if summary_file:
        append_summary(Path(summary_file), report.summary)
    # workflow commands: after the ::stop-commands:: fence has been lifted
    for line in report.annotations:
        terminal.out(line)
    return 0
