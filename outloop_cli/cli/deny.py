"""``outloop deny``: refuse what a run waits for; the run ends as `approval_denied`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.approve import report_decision
from outloop_cli.cli.registry import CommandSet

_commands = CommandSet()
register = _commands.register


@_commands.command("deny")
def deny_command(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why not: recorded in run.json and the audit log.")
    ],
    request: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--request", help="Deny only this request id (as `outloop show` printed it)."),
    ] = None,
    as_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--as", help="Who denies, for the audit log (default: your OS user)."),
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the run to take the decision.")
    ] = 10.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="The decision as one JSON object on stdout.")
    ] = False,
) -> int:
    """Deny what a run waits for (state waiting_approval); the run stops, `approval_denied`."""
    from outloop_cli.commands.deny import deny_run, operator_name

    result = deny_run(
        Path.cwd(), run, who=operator_name(as_name), reason=reason, request_id=request, wait=wait
    )
    return report_decision(result, as_json=as_json)
