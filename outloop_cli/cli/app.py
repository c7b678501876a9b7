"""The typer app, built from one module per verb (the ``VERBS`` table of ``cli/verbs.py``).

Each verb pairs ``cli/<module>.py`` (options in, one call, results printed)
with ``commands/<module>.py`` (plain functions that return values and never
print). Tables and JSON go to stdout, as the command's output; notes and
hints go to stderr; errors are raised, and ``outloop_cli.main`` turns them
into exit codes in one place.

The root group (``cli/lazy_group.py``) imports a verb's module only when
that verb runs; modules keep heavy imports inside command functions so that
building even that one command stays cheap.
"""

from __future__ import annotations

import typer

from outloop_cli import __version__
from outloop_cli.cli.lazy_group import VerbGroup, typer_settings
from outloop_cli.cli.terminal import out
from outloop_cli.cli.verbs import ROOT_HELP, VERBS, VERSION_HELP

__all__ = ["VERBS", "app"]

app = typer.Typer(
    name="outloop",
    help=ROOT_HELP,
    no_args_is_help=True,
    cls=VerbGroup,
    **typer_settings(),
)


def _version(value: bool) -> None:
    if value:
        out(f"outloop {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help=VERSION_HELP,
        callback=_version,
        is_eager=True,
    ),
) -> None:
    """Run coding agents in loops until an outside check passes, in their own git worktree."""
