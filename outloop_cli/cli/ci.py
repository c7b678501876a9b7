"""CLI commands for CI and forges: pr, matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet, err

_commands = CommandSet()


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
        typer.echo(
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
        typer.echo(pull.url)
    return 0


@_commands.command("matrix")
def matrix_command(
    loops: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Only these loops (default: every loop)."),
    ] = None,
) -> int:
    """Print the loops as JSON for a CI job matrix (GitHub Actions `strategy.matrix`)."""
    from outloop_cli.commands.matrix import loop_matrix

    typer.echo(json.dumps(loop_matrix(Path.cwd(), loops or None), separators=(",", ":")))
    return 0


@_commands.command("action-report", hidden=True)
def action_report_command(
    runs: Annotated[Path, typer.Option("--runs", help="File with `outloop run --json` output.")],
    exit_code: Annotated[int, typer.Option("--exit-code", help="Exit code of `outloop run`.")],
    out: Annotated[Path, typer.Option("--out", help="The --out directory of the run.")],
) -> int:
    """For action.yml: step outputs, step summary and annotations from `outloop run --json`."""
    import os

    from outloop_cli.commands.action_report import (
        append_summary,
        build_report,
        read_runs,
        write_outputs,
    )

    report = build_report(read_runs(runs), exit_code, out)
    output_file = os.environ.get("GITHUB_OUTPUT")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if output_file:
        write_outputs(Path(output_file), report.outputs)
    else:
        err("GITHUB_OUTPUT is not set; outputs: " + json.dumps(report.outputs))
    if summary_file:
        append_summary(Path(summary_file), report.summary)
    # workflow commands: after the ::stop-commands:: fence has been lifted
    for line in report.annotations:
        typer.echo(line)
    return 0


register = _commands.register
