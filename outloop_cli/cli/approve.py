"""``outloop approve``: let a run that waits at an approval gate go on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out_json

if TYPE_CHECKING:
    from outloop_cli.commands.approve import DecisionResult

_commands = CommandSet()
register = _commands.register


@_commands.command("approve")
def approve_command(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    note: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--note", help="A word for the audit log with the approval."),
    ] = None,
    request: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--request",
            help="Approve only this request id (as `outloop show` printed it); a run that "
            "has moved on to another request is left waiting.",
        ),
    ] = None,
    as_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--as", help="Who approves, for the audit log (default: your OS user)."),
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the run to take the decision.")
    ] = 10.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="The decision as one JSON object on stdout.")
    ] = False,
) -> int:
    """Approve what a run waits for (state waiting_approval); it goes on at once."""
    from outloop_cli.commands.approve import approve_run, operator_name

    result = approve_run(
        Path.cwd(), run, who=operator_name(as_name), note=note, request_id=request, wait=wait
    )
    return report_decision(result, as_json=as_json)


def report_decision(result: DecisionResult, *, as_json: bool) -> int:
    """Shared with ``outloop deny``: what was decided, and whether the run took it."""
    if as_json:
        out_json(
            {
                "run_id": result.run_id,
                "request": result.request_id,
                "gate": result.gate,
                "what": result.what,
                "decision": result.decision,
                "who": result.who,
                "acknowledged": result.acknowledged,
            }
        )
    verb = "approved" if result.decision == "approve" else "denied"
    err(f"run {result.run_id}: {result.who} {verb} request {result.request_id} ({result.what})")
    if not result.acknowledged:
        err("the run has not taken the decision yet; `outloop show` tells when it has")
        return 1
    return 0
