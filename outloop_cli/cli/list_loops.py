"""``outloop list``: one line (or JSON object) per loop of the repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from outloop_cli.cli.registry import CommandSet, err

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
            typer.echo(json.dumps(asdict(loop)))
        else:
            status = (
                f"  ({loop.problems} problem(s): run `outloop validate`)" if loop.problems else ""
            )
            desc = f" — {loop.description}" if loop.description else ""
            typer.echo(f"{loop.name}: {loop.agent} → {loop.goal}{desc}{status}")
    if not loops:
        err("no loops yet (create one with `outloop init`)")
    return 0
