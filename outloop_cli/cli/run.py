"""``outloop run``: plan the loops, run them under the progress view, one verdict per run.

``run_and_report`` is shared with ``outloop resume``, which runs one plan the same way.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Optional, TypeVar

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out_json

if TYPE_CHECKING:
    from outloop_cli.engine.events import Observer
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
        int,
        typer.Option("--jobs", "-j", min=1, help="Run up to N loops (and repositories) at once."),
    ] = 1,
    repos: Annotated[
        list[str] | None,
        typer.Option(
            "--repo",
            help="Run in this repository instead of the one here; repeat it for more. Globs "
            "are expanded by outloop too ('~/clients/*': only the git checkouts it matches), "
            "and @NAME is a group of $XDG_CONFIG_HOME/outloop/repos.yml (`groups: {NAME: "
            "[PATH, ...]}`). One repository's failure is reported for it and stops no other.",
        ),
    ] = None,
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

    With --repo, each repository gets its own run, as `outloop run` there would
    (worktree, broker, workspace by the user's policy, audit chain), --jobs at
    a time; a repository whose loop is missing, broken or refused is reported
    and the others go on. Ctrl-C stops them all (`interrupted`). --json prints
    one object per run (JSON Lines), `repo` first.

    A triggered start (--event, --trigger) is skipped, never queued, while the
    loop is still running in this repository, and a schedule's fire time starts
    at most one run; each skip is a line in .git/outloop/triggers.jsonl.

    Exit codes: 0 goal met, 1 not met, 2 bad config or usage, 3 could not run,
    75 a trigger skipped, 130 interrupted; with several runs the most severe wins
    (130, 3, 2, 1, 75, 0).
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
    if repos:
        return _run_repos(repos, loops or [], options, run_all=run_all, jobs=jobs, as_json=as_json)
    plans = plan_loops(Path.cwd(), loops or [], options, run_all=run_all)
    return run_and_report(plans, options, jobs=jobs, as_json=as_json)


def _run_repos(
    repos: list[str],
    loops: list[str],
    options: RunOptions,
    *,
    run_all: bool,
    jobs: int,
    as_json: bool,
) -> int:
    from outloop_cli.commands.run import combined_exit_code
    from outloop_cli.commands.run_repos import execute_repos, plan_repos
    from outloop_cli.config.repo_groups import expand_repo_args
    from outloop_cli.errors import UsageError

    targets = expand_repo_args(repos, Path.cwd())
    if not targets:
        raise UsageError("--repo named no repository", hint="give a path, a glob or @GROUP")
    slots = plan_repos(targets, loops, options, run_all=run_all)
    outcomes = _supervised(
        lambda progress: execute_repos(slots, options, observer=progress, jobs=jobs)
    )
    for result in outcomes:
        if as_json:
            out_json(result.as_json())
        if result.outcome is not None:
            _verdict(result.outcome.record, result.outcome.paths.summary, repo=result.repo)
        else:
            started = f" (run {result.run_id})" if result.run_id else ""
            err(f"❌ {result.label}{started}: not run — exit {result.exit_code}\n   {result.error}")
    return combined_exit_code(outcomes)


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
    from outloop_cli.commands.run import combined_exit_code, execute_plans

    outcomes = _supervised(
        lambda progress: execute_plans(plans, options, observer=progress, jobs=jobs, resume=resume)
    )
    for outcome in outcomes:
        if as_json:
            out_json(outcome.as_json())
        _verdict(outcome.record, outcome.paths.summary)
    return combined_exit_code(outcomes)


_T = TypeVar("_T")


def _supervised(execute: Callable[[Observer], list[_T]]) -> list[_T]:
    """Run under the progress view, with SIGTERM stopping the runs as Ctrl-C does."""
    from outloop_cli.cli.progress import make_progress
    from outloop_cli.process.supervise import adopt_orphans

    # daemons an agent leaves behind come back to us and are killed between steps
    adopt_orphans()

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with make_progress() as progress:
            return execute(progress)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _verdict(record: RunRecord, summary: Path, *, repo: str | None = None) -> None:
    mark = "✅" if record.goal_met else "❌"
    where = f"{repo} ({record.loop})" if repo else record.loop
    err(
        f"{mark} {where}: {record.stop_reason.value if record.stop_reason else '?'} — "
        f"{record.stop_detail}\n   branch {record.branch}\n   worktree {record.worktree}\n"
        f"   summary {summary}"
    )
