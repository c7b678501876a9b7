"""``outloop list``: one line (or JSON object) per loop of the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_json

_commands = CommandSet()
register = _commands.register


@_commands.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per loop.")] = False,
) -> int:
    """List the loops in this repository."""
    from dataclasses import asdict

    from outloop_cli.commands.list_loops import list_loops

    loops = list_loops(Path.cwd())
    for loop in loops:
        if as_json:
            out_json(asdict(loop))
        else:
            status = (
                f"  ({loop.problems} problem(s): run `outloop validate`)" if loop.problems else ""
            )
            desc = f" — {loop.description}" if loop.description else ""
            out(f"{loop.name}: {loop.agent} → {loop.goal}{desc}{status}")
    if not loops:
        err("no loops yet (create one with `outloop init`)")
    return 0
