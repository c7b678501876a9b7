"""``outloop say``: a note from you to a run's next agent turn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out_json

_commands = CommandSet()
register = _commands.register


@_commands.command("say")
def say_command(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    message: Annotated[
        str, typer.Argument(help="What the agent should know (at most 4000 characters).")
    ],
    as_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--as", help="Who says it, for the prompt and the audit log (default: your OS user)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The queued note as one JSON object on stdout.")
    ] = False,
) -> int:
    """Hand a note to the run's next agent turn: shown in its prompt as the operator's words,
    recorded in the audit log and the iteration's commit. Notes queue in order."""
    from outloop_cli.commands.approve import operator_name
    from outloop_cli.commands.say import say_to_run

    result = say_to_run(Path.cwd(), run, message, who=operator_name(as_name))
    if as_json:
        out_json(
            {
                "run_id": result.run_id,
                "note": result.note_id,
                "who": result.who,
                "queued": result.queued,
                "live": result.live,
            }
        )
    where = "the next agent turn" if result.live else "the next turn after `outloop resume`"
    err(f"note {result.note_id} queued for run {result.run_id} ({result.queued} waiting): {where}")
    return 0
