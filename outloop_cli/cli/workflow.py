"""``outloop workflow``: loops' ``on:`` as GitHub Actions workflow files (print, write, check)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out

_commands = CommandSet()
register = _commands.register


@_commands.command("workflow")
def workflow_command(
    loops: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Only these loops (default: every loop with an `on:` key)."),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write .github/workflows/outloop-<loop>.yml.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 when a committed workflow differs from its loop."),
    ] = False,
    action: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--action",
            help="outloop's action, pinned: OWNER/REPO@<40-hex commit>, or ./PATH. "
            "Default: the pin in the existing workflow file.",
        ),
    ] = None,
    action_version: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--action-version", help="The version the --action commit is, for its comment."
        ),
    ] = None,
    workspace: Annotated[
        str,
        typer.Option(
            "--workspace",
            help="The policy workspace whose secrets the workflow passes "
            "(OUTLOOP_SECRET_<WORKSPACE>_<NAME>).",
        ),
    ] = "default",
) -> int:
    """Compile loops' `on:` (schedule, ci_failed, issues, pull_request, manual) into
    GitHub Actions workflows that run outloop's action.

    Each workflow has `permissions: {}` at the top and `contents: read` for its job,
    a concurrency group per loop and ref that never cancels a running loop, every
    `uses:` pinned to a commit, secrets only in the outloop step's `env:`, and the
    event reaching outloop as data ($GITHUB_EVENT_PATH), never spliced into a script.

    Without --write or --check, prints the workflows. Exit codes: 0 up to date (or
    written), 1 a workflow is stale (--check), 2 bad config or usage.
    """
    from outloop_cli.commands.workflow import plan_workflows, write_workflows

    if write and check:
        from outloop_cli.errors import UsageError

        raise UsageError("--write and --check exclude each other", hint="pick one")
    root, files = plan_workflows(
        Path.cwd(),
        loops or [],
        action=action,
        action_version=action_version,
        workspace=workspace,
    )
    if not files:
        err("no loop has an `on:` key: nothing to compile (name a loop to compile it anyway)")
        return 0
    if check:
        stale = [f for f in files if not f.current]
        for f in files:
            err(f"{f.path}: {f.state}")
        if stale:
            err("hint: run `outloop workflow --write` and commit the result")
            return 1
        return 0
    if write:
        changed = write_workflows(root, files)
        for f in files:
            verb = (
                "removed"
                if f.text is None and f in changed
                else "wrote"
                if f in changed
                else "up to date"
            )
            err(f"{f.path}: {verb}")
        return 0
    for f in files:
        if f.text is not None:
            out(f"# --- {f.path}\n{f.text}")
    return 0
