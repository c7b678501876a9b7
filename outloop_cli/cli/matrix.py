"""``outloop matrix``: the loops as one line of JSON for a CI job matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet

_commands = CommandSet()
register = _commands.register


@_commands.command("matrix")
def matrix_command(
    loops: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Only these loops (default: every loop)."),
    ] = None,
) -> int:
    """Print the loops as JSON for a CI job matrix (GitHub Actions `strategy.matrix`)."""
    from outloop_cli.commands.matrix import loop_matrix

    typer.echo(json.dumps(loop_matrix(Path.cwd(), loops or None), separators=(",", ":")))
    return 0
