"""Core commands: init, validate, list, schema, run, demo.

Options in, one call per command, results printed. Nothing below the CLI
layer prints; errors are raised and turned into exit codes by
``outloop_cli.main``.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Optional

import typer

from outloop_cli.cli.registry import CommandSet, err

_commands = CommandSet()
_err = err


@_commands.command("init")
def init_command(
    preset: Annotated[
        str, typer.Option("--preset", "-p", help="claude | codex | aider | gemini | command")
    ] = "command",
    name: Annotated[
        str, typer.Option("--name", "-n", help="Loop name: the file becomes .outloop/NAME.yml")
    ] = "",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> int:
    """Write a commented starter loop file to .outloop/."""
    from outloop_cli.commands.init import init_loop

    path = init_loop(Path.cwd(), preset=preset, name=name or preset, force=force)
    typer.echo(f"wrote {path}")
    _err("next: edit it, `outloop validate`, commit it, then `outloop run`")
    return 0


@_commands.command("validate")
def validate_command(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Loop files (default: every .outloop/*.yml).")
    ] = None,
) -> int:
    """Check loop files; print file:line:col: message for every problem."""
    from outloop_cli.commands.validate import validate

    checked, problems = validate(Path.cwd(), files or [])
    for problem in problems:
        _err(problem.render())
    if not checked:
        _err("no loop files found in .outloop/ (create one with `outloop init`)")
        return 2
    if problems:
        files_with = len({p.file for p in problems})
        _err(f"{len(problems)} problem(s) in {files_with} of {len(checked)} file(s)")
        return 2
    _err(f"{len(checked)} loop file(s) OK")
    return 0


@_commands.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per loop.")] = False,
) -> int:
    """List the loops in this repository."""
    from dataclasses import asdict

    from outloop_cli.commands.list_loops import list_loops

    loops = list_loops(Path.cwd())
    for loop in loops:
        if as_json:
            typer.echo(json.dumps(asdict(loop)))
        else:
            status = (
                f"  ({loop.problems} problem(s): run `outloop validate`)" if loop.problems else ""
            )
            desc = f" — {loop.description}" if loop.description else ""
            typer.echo(f"{loop.name}: {loop.agent} → {loop.goal}{desc}{status}")
    if not loops:
        _err("no loops yet (create one with `outloop init`)")
    return 0


@_commands.command("schema")
def schema_command(
    path: Annotated[
        bool, typer.Option("--path", help="Print the path of a file holding the schema.")
    ] = False,
) -> int:
    """Print the JSON Schema of loop files."""
    from outloop_cli.commands.schema import schema_path, schema_text

    if path:
        typer.echo(str(schema_path()))
    else:
        sys.stdout.write(schema_text())
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@_commands.command("run")
def run_command(
    loops: Annotated[
        list[str] | None, typer.Argument(help="Loop names (default: the only loop).")
    ] = None,
    run_all: Annotated[
        bool, typer.Option("--all", help="Run every loop in the repository.")
    ] = False,
    max_iterations: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-iterations", min=1, help="Override limits.max_iterations."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Copy reports into DIR/<run-id>/.")
    ] = None,
    start: Annotated[str, typer.Option("--from", help="Starting commit (default HEAD).")] = "HEAD",
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Run up to N loops at once.")
    ] = 1,
    parallel: Annotated[
        bool,
        typer.Option("--parallel", help="Allow a second run of a loop that is already running."),
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            envvar="OUTLOOP_POLICY",
            help="Workspace policy file (default: $XDG_CONFIG_HOME/outloop/policy.yml).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per run on stdout.")
    ] = False,
) -> int:
    """Run loops, each in its own worktree on a scratch branch."""
    from outloop_cli.commands.run import plan_loops
    from outloop_cli.engine.run import RunOptions

    options = RunOptions(
        start=start, max_iterations=max_iterations, out_dir=out, parallel=parallel, policy=policy
    )
    plans = plan_loops(Path.cwd(), loops or [], options, run_all=run_all)
    return run_and_report(plans, options, jobs=jobs, as_json=as_json)


def run_and_report(
    plans: list[Any], options: Any, *, jobs: int = 1, as_json: bool = False, resume: Any = None
) -> int:
    """Execute plans under the progress view and print one verdict per run."""
    from outloop_cli.cli.progress import make_progress
    from outloop_cli.commands.run import combined_exit_code, execute_plans
    from outloop_cli.process.spawn import adopt_orphans

    # daemons an agent leaves behind come back to us and are killed between steps
    adopt_orphans()

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with make_progress() as progress:
            outcomes = execute_plans(plans, options, observer=progress, jobs=jobs, resume=resume)
    finally:
        signal.signal(signal.SIGTERM, previous)
    for outcome in outcomes:
        record = outcome.record
        if as_json:
            typer.echo(json.dumps(outcome.as_json()))
        mark = "✅" if record.goal_met else "❌"
        _err(
            f"{mark} {record.loop}: {record.stop_reason.value if record.stop_reason else '?'} — "
            f"{record.stop_detail}\n   branch {record.branch}\n   worktree {record.worktree}\n"
            f"   summary {outcome.paths.summary}"
        )
    return combined_exit_code(outcomes)


@_commands.command("demo")
def demo_command(
    directory: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--dir", help="Where to create the demo repository (default: a new temp dir)."
        ),
    ] = None,
) -> int:
    """Run a real loop on a bundled project with a scripted stand-in agent."""
    from outloop_cli.cli.progress import make_progress
    from outloop_cli.commands.demo import demo_log, prepare_demo
    from outloop_cli.commands.run import combined_exit_code, execute_plans, plan_loops
    from outloop_cli.engine.run import RunOptions

    repo = prepare_demo(directory)
    _err(f"demo repository: {repo}")
    _err(
        "agent: outloop's demo agent, a scripted stand-in for an LLM coding agent (no model, no network)"
    )
    options = RunOptions()
    plans = plan_loops(repo, ["fix-tests"], options)
    with make_progress() as progress:
        outcomes = execute_plans(plans, options, observer=progress)
    for outcome in outcomes:
        record = outcome.record
        _err(
            f"\nstopped: {record.stop_reason.value if record.stop_reason else '?'} — {record.stop_detail}"
        )
        _err(f"git log of {record.branch}:")
        typer.echo(demo_log(repo, record.branch, record.base_commit))
        _err(f"summary: {outcome.paths.summary}")
    return combined_exit_code(outcomes)


register = _commands.register
