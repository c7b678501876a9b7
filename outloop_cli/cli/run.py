"""``outloop run``: plan the loops, run them under the progress view, one verdict per run.

``run_and_report`` is shared with ``outloop resume``, which runs one plan the same way.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out_json

if TYPE_CHECKING:
    from outloop_cli.engine.plan import LoopPlan, RunOptions
    from outloop_cli.store.records import RunRecord

_commands = CommandSet()
register = _commands.register


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
            help="Workspace policy file: which repos get which secrets, and where each "
            "secret may go (default: $XDG_CONFIG_HOME/outloop/policy.yml).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per run on stdout.")
    ] = False,
    event: Annotated[
        Path | None,
        typer.Option(
            "--event",
            help="The GitHub event payload that started this run ($GITHUB_EVENT_PATH; its "
            "kind from $GITHUB_EVENT_NAME): checked against the loop's `on:`, and shown to "
            "the agent as untrusted data.",
        ),
    ] = None,
    trigger: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--trigger",
            help="`schedule`: a timer's start, for the latest fire time of `on.schedule` "
            "(what `outloop schedule install` runs).",
        ),
    ] = None,
) -> int:
    """Run loops, each in its own worktree on a scratch branch.

    Every loop is read from the starting commit and checked before anything is
    written: bad config exits 2; a missing agent, a refused secret, or a
    credential that would send a key outside the policy's binding (a secret's
    `upstreams:` and `hosts:`; a bare name: its well-known API only) exits 3,
    naming the loop file's line and the policy's, audited in
    .git/outloop/refused.jsonl.

    The agent's turn and the goal run in a bubblewrap sandbox (the loop's
    `sandbox:`, by default `auto`): the worktree writable, the system and the
    agent's program read-only, an empty $HOME, its own network. Where
    bubblewrap cannot run, `auto` goes on without it and warns; `bwrap` exits
    3 and says what to install or enable.

    A triggered start (--event, --trigger) is skipped, never queued, while the
    loop is still running in this repository, and a schedule's fire time starts
    at most one run; each skip is a line in .git/outloop/triggers.jsonl.

    Exit codes: 0 goal met, 1 not met, 2 bad config or usage, 3 could not run,
    75 a trigger skipped, 130 interrupted.
    """
    from outloop_cli.commands.run import plan_loops
    from outloop_cli.engine.plan import RunOptions

    options = RunOptions(
        start=start,
        max_iterations=max_iterations,
        out_dir=out,
        parallel=parallel,
        policy=policy,
        event=event,
        trigger=trigger,
    )
    plans = plan_loops(Path.cwd(), loops or [], options, run_all=run_all)
    return run_and_report(plans, options, jobs=jobs, as_json=as_json)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # a SIGTERM (a CI job cancelled, `kill`) stops the runs as cleanly as Ctrl-C does
    raise KeyboardInterrupt


def run_and_report(
    plans: list[LoopPlan],
    options: RunOptions,
    *,
    jobs: int = 1,
    as_json: bool = False,
    resume: RunRecord | None = None,
) -> int:
    """Execute plans under the progress view and print one verdict per run."""
    from outloop_cli.cli.progress import make_progress
    from outloop_cli.commands.run import combined_exit_code, execute_plans
    from outloop_cli.process.supervise import adopt_orphans

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
            out_json(outcome.as_json())
        mark = "✅" if record.goal_met else "❌"
        err(
            f"{mark} {record.loop}: {record.stop_reason.value if record.stop_reason else '?'} — "
            f"{record.stop_detail}\n   branch {record.branch}\n   worktree {record.worktree}\n"
            f"   summary {outcome.paths.summary}"
        )
    return combined_exit_code(outcomes)
