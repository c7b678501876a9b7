"""``outloop init``: write a starter loop file and say what to do next."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outloop_cli.agents.registry import preset_names
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out

_commands = CommandSet()
register = _commands.register


@_commands.command("init")
def init_command(
    preset: Annotated[
        str, typer.Option("--preset", "-p", help=" | ".join(preset_names()))
    ] = "command",
    name: Annotated[
        str, typer.Option("--name", "-n", help="Loop name: the file becomes .outloop/NAME.yml")
    ] = "",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> int:
    """Write a commented starter loop file to .outloop/."""
    from outloop_cli.commands.init import init_loop

    path = init_loop(Path.cwd(), preset=preset, name=name or preset, force=force)
    out(f"wrote {path}")
    err(
        "next: edit it, `outloop validate`, commit it with .outloop/schema.json"
        " (the schema editors read), then `outloop run`"
    )
    return 0
