"""CLI commands: credential (git's credential helper and ``via: helper`` grants)."""

from __future__ import annotations

import os
import sys

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out_raw

_commands = CommandSet()
register = _commands.register


@_commands.command("credential")
def credential(
    operation: str = typer.Argument(..., metavar="get|store|erase|token"),
    name: str | None = typer.Argument(None, help="with token: the credential's name"),
) -> None:
    """Git's credential helper inside a run; `token NAME` prints a short-lived raw grant.

    Git runs `outloop credential get|store|erase` itself (outloop configures it
    for the run) with key=value lines on stdin; other operations are ignored,
    as git's protocol asks. `token NAME` is for tools that need the raw value
    of a `via: helper` credential; the grant is audited.
    """
    from outloop_cli.commands import credential as commands
    from outloop_cli.errors import UsageError

    if operation == "token":
        if not name:
            raise UsageError("`outloop credential token` needs a credential name")
        grant = commands.token(name, os.environ)
        out_raw(grant.value + "\n")
        return
    if name is not None:
        raise UsageError(f"`outloop credential {operation}` takes no name")
    answer = commands.helper(operation, sys.stdin.buffer.read(), os.environ)
    if answer.message:
        err(answer.message)
    out_raw(answer.stdout)
