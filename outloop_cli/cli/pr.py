"""``outloop pr``: open or update a run's pull request; its URL on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out

_commands = CommandSet()
register = _commands.register


@_commands.command("pr")
def pr_command(
    run: Annotated[str, typer.Argument(help="The run (its id, or a unique part of it).")],
    base: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--base", help="Branch to merge into (default: the repository's default)."),
    ] = None,
    push: Annotated[
        bool, typer.Option("--push/--no-push", help="Push the run's branch first if needed.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> int:
    """Open or update the pull request of a run's branch (a draft until the goal is met)."""
    from outloop_cli.commands.pr import pull_request_for_run

    outcome = pull_request_for_run(Path.cwd(), run, base=base, push=push)
    for warning in outcome.warnings:
        err(f"warning: {warning}")
    pull = outcome.pull
    if as_json:
        out(
            json.dumps(
                {
                    "run": outcome.run_id,
                    "branch": outcome.branch,
                    "number": pull.number,
                    "url": pull.url,
                    "created": pull.created,
                    "draft": pull.draft,
                    "pushed": outcome.pushed.sha if outcome.pushed else None,
                }
            )
        )
    else:
        if outcome.pushed is not None:
            err(f"pushed {outcome.branch} at {outcome.pushed.sha[:10]}")
        what = "opened" if pull.created else "updated"
        state = " (draft)" if pull.draft else ""
        err(f"{what} pull request #{pull.number}{state}")
        out(pull.url)
    return 0
