"""The typer app. Each module of this package registers its own commands.

Modules keep heavy imports inside command functions so that building the app
(needed for every invocation) stays cheap.
"""

from __future__ import annotations

import typer

from outloop_cli import __version__
from outloop_cli.cli import audit, ci, control, core, credential, report, runs, secrets

app = typer.Typer(
    name="outloop",
    help="Run coding agents in loops until an outside check passes, in their own git worktree.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"outloop {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help="Show the version and exit.",
        callback=_version,
        is_eager=True,
    ),
) -> None:
    """Run coding agents in loops until an outside check passes, in their own git worktree."""


for _module in (core, runs, control, audit, report, secrets, credential, ci):
    _module.register(app)
