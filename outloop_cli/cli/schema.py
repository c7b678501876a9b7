"""``outloop schema``: the loop files' JSON Schema, or the path of a file holding it."""

from __future__ import annotations

from typing import Annotated

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import out, out_raw

_commands = CommandSet()
register = _commands.register


@_commands.command("schema")
def schema_command(
    path: Annotated[
        bool, typer.Option("--path", help="Print the path of a file holding the schema.")
    ] = False,
) -> int:
    """Print the JSON Schema of loop files."""
    from outloop_cli.commands.schema import schema_path, schema_text

    if path:
        out(str(schema_path()))
    else:
        out_raw(schema_text())
    return 0
