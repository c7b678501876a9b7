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
    repos: Annotated[
        bool,
        typer.Option(
            "--repos",
            help="The schema of repos.yml (the repo groups of `outloop run --repo @GROUP`) "
            "instead; with --path too.",
        ),
    ] = False,
) -> int:
    """Print the JSON Schema of loop files (or, with --repos, of repos.yml)."""
    from pathlib import Path

    from outloop_cli.commands.schema import (
        check_repo_schema,
        schema_path,
        schema_text,
        write_repo_schema,
    )
    from outloop_cli.errors import UsageError

    if repos and (write or check):
        raise UsageError(
            "--repos goes with printing the schema or --path, not --write or --check",
            hint="repos.yml lives outside every repository: put the path "
            "`outloop schema --repos --path` prints in its first line, "
            "`# yaml-language-server: $schema=PATH`",
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
        out(str(schema_path(repos=repos)))
    else:
        out_raw(schema_text(repos=repos))
    return 0
