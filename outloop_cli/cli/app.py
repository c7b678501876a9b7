"""The typer app, built from one module per verb (the ``VERBS`` table).

Each verb pairs ``cli/<module>.py`` (options in, one call, results printed)
with ``commands/<module>.py`` (plain functions that return values and never
print). Tables and JSON go to stdout, as the command's output; notes and
hints go to stderr; errors are raised, and ``outloop_cli.main`` turns them
into exit codes in one place.

Modules keep heavy imports inside command functions so that building the app
(needed for every invocation) stays cheap.
"""

from __future__ import annotations

from types import ModuleType

import typer

from outloop_cli import __version__
from outloop_cli.cli import (
    action_report,
    approve,
    audit,
    clean,
    credential,
    demo,
    deny,
    init,
    list_loops,
    matrix,
    pr,
    report,
    resume,
    run,
    say,
    schedule,
    schema,
    secrets,
    show,
    status,
    stop,
    ui,
    validate,
    workflow,
)
from outloop_cli.cli.terminal import out

# verb (or command group) → the module that registers it; its twin in commands/ has
# the same name. Where the verb is no good as a module name, the module says what it is:
# `list` would shadow the builtin wherever it is imported, `action-report` is no identifier.
# This order is the order of `outloop --help` (typer lists groups after commands).
VERBS: dict[str, ModuleType] = {
    "init": init,
    "validate": validate,
    "list": list_loops,
    "schema": schema,
    "run": run,
    "demo": demo,
    "status": status,
    "show": show,
    "clean": clean,
    "stop": stop,
    "resume": resume,
    "approve": approve,
    "deny": deny,
    "say": say,
    "audit": audit,
    "report": report,
    "ui": ui,
    "secrets": secrets,
    "credential": credential,
    "pr": pr,
    "matrix": matrix,
    "workflow": workflow,
    "schedule": schedule,
    "action-report": action_report,
}

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
        out(f"outloop {__version__}")
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


for _module in VERBS.values():
    _module.register(app)
