"""CLI command: ``outloop report RUN --format junit|markdown|html [--output FILE]``.

The report goes to stdout (it is the command's output) unless ``--output``
names a file or directory; notes go to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out_raw

_commands = CommandSet()
register = _commands.register


@_commands.command("report")
def report_command(
    run: Annotated[
        str, typer.Argument(help="Run id, or a unique prefix or suffix of one.", metavar="RUN")
    ],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="junit | markdown | html", metavar="FORMAT"),
    ] = "markdown",
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help="Write to FILE (or into a directory) instead of stdout; '-' is stdout.",
            metavar="FILE",
        ),
    ] = None,
) -> int:
    """Write a report of one run: JUnit XML, markdown, or a self-contained HTML page."""
    from outloop_cli.commands.report import render_report, write_report

    report = render_report(Path.cwd(), run, fmt)
    if output is None or str(output) == "-":
        # a document for a file or a viewer; its text was cleaned when it was rendered
        out_raw(report.content)
        return 0
    written = write_report(report, output)
    err(f"wrote {report.format} report of run {report.run_id} to {written}")
    return 0
