"""``outloop schema``: the loop files' JSON Schema, or the path of a file holding it."""

from __future__ import annotations

from typing import Annotated

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_raw

_commands = CommandSet()
register = _commands.register


@_commands.command("schema")
def schema_command(
    path: Annotated[
        bool, typer.Option("--path", help="Print the path of a file holding the schema.")
    ] = False,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Write or refresh .outloop/schema.json, the copy loop files name (commit it).",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Exit 1 when .outloop/schema.json is missing or out of date (for CI)."
        ),
    ] = False,
) -> int:
    """Print the JSON Schema of loop files."""
    from pathlib import Path

    from outloop_cli.commands.schema import (
        check_repo_schema,
        schema_path,
        schema_text,
        write_repo_schema,
    )

    if write:
        written = write_repo_schema(Path.cwd())
        out(str(written.path))
        err(f"{written.state}: {written.path}")
        return 0
    if check:
        checked = check_repo_schema(Path.cwd())
        if checked.state == "current":
            err(f"current: {checked.path}")
            return 0
        err(f"{checked.state}: {checked.path}; run `outloop schema --write` and commit it")
        return 1
    if path:
        out(str(schema_path()))
    else:
        out_raw(schema_text())
    return 0
