"""``outloop matrix``: the loops as one line of JSON for a CI job matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import out_json

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

    out_json(loop_matrix(Path.cwd(), loops or None), separators=(",", ":"))
    return 0
