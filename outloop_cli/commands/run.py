"""``outloop run``: plan every requested loop first, then run them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from outloop_cli.config.source import committed_loop_names
from outloop_cli.engine.events import Observer
from outloop_cli.engine.loop import LoopRun
from outloop_cli.engine.plan import LoopPlan, RunOptions, plan_loop
from outloop_cli.errors import (
    EXIT_COULD_NOT_RUN,
    EXIT_GOAL_NOT_MET,
    EXIT_INTERRUPTED,
    EXIT_SKIPPED,
    EXIT_USAGE,
    ConfigError,
    Problem,
    UsageError,
)
from outloop_cli.git.repo import Repository, discover
from outloop_cli.store.records import RunRecord, StopReason
from outloop_cli.store.runs import RunPaths

_T = TypeVar("_T")


class HasExitCode(Protocol):
    """A run's result (or a repository's that could not have one), as far as exit codes go."""

    @property
    def exit_code(self) -> int: ...


@dataclass(frozen=True)
class RunOutcome:
    """One run ``outloop run`` executed: its final record and the paths of its files."""

    record: RunRecord
    paths: RunPaths

    @property
    def exit_code(self) -> int:
        return self.record.exit_code or 0

    def as_json(self) -> dict[str, Any]:
        data = self.record.to_dict()
        data["files"] = {
            "run_dir": str(self.paths.root),
            "run_json": str(self.paths.run_json),
            "junit": str(self.paths.junit),
            "summary": str(self.paths.summary),
            "audit": str(self.paths.audit),
        }
        return data


def select_loops(
    repo: Repository, commit: str, requested: Sequence[str], *, run_all: bool
) -> list[str]:
    available = committed_loop_names(repo, repo.resolve_commit(commit))
    if requested:
        return list(dict.fromkeys(requested))
    if run_all or len(available) == 1:
        if not available:
            raise UsageError(
                "this repository has no committed loops", hint="create one with `outloop init`"
            )
        return available
    if not available:
        raise UsageError(
            "this repository has no committed loops",
            hint="create one with `outloop init`, then commit it",
        )
    raise UsageError(
        "which loop? this repository has " + ", ".join(available),
        hint="name one (`outloop run NAME`) or run them all with `--all`",
    )


def plan_loops(
    cwd: Path, loops: Sequence[str], options: RunOptions, *, run_all: bool = False
) -> list[LoopPlan]:
    """Validate every requested loop before anything runs: bad config exits 2 with nothing written."""
    repo = Repository(discover(cwd))
    names = select_loops(repo, options.start, loops, run_all=run_all)
    plans: list[LoopPlan] = []
    problems: list[Problem] = []
    for name in names:
        try:
            plans.append(plan_loop(repo, name, options))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return plans


def execute_plans(
    plans: Sequence[LoopPlan],
    options: RunOptions,
    *,
    observer: Observer,
    jobs: int = 1,
    resume: RunRecord | None = None,
) -> list[RunOutcome]:
    """Run the plans, ``jobs`` at a time; Ctrl-C stops every run cleanly (``interrupted``)."""
    interrupt = threading.Event()
    runs = [
        LoopRun(
            plan,
            options,
            observer=observer,
            interrupt=interrupt,
            resume_from=resume,
        )
        for plan in plans
    ]
    if jobs <= 1 or len(runs) == 1:
        return _run_sequentially(runs)
    return run_concurrently(runs, jobs, interrupt)


def start_and_execute(run: LoopRun) -> RunOutcome:
    if run.record is not None:
        run.resume()
    else:
        run.start()
    return RunOutcome(run.execute(), run.paths)


def _run_sequentially(runs: Sequence[LoopRun]) -> list[RunOutcome]:
    outcomes: list[RunOutcome] = []
    for run in runs:
        outcome = start_and_execute(run)
        outcomes.append(outcome)
        if outcome.record.stop_reason is StopReason.INTERRUPTED:
            break
    return outcomes


def run_concurrently(
    runs: Sequence[LoopRun],
    jobs: int,
    interrupt: threading.Event,
    job: Callable[[LoopRun], _T] | None = None,
) -> list[_T]:
    """Each run in a worker thread, ``jobs`` at once; this thread only waits and hears Ctrl-C."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    work: Callable[[LoopRun], Any] = job or start_and_execute
    outcomes: dict[int, _T] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="outloop-run") as pool:
        futures: dict[Future[_T], int] = {pool.submit(work, run): i for i, run in enumerate(runs)}
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                # Ctrl-C reaches only this thread: tell every run, then wait for them to finish
                interrupt.set()
                for run in runs:
                    run.cancel.set()
                continue
            for future in done:
                outcomes[futures[future]] = future.result()
    return [outcomes[i] for i in sorted(outcomes)]


def combined_exit_code(outcomes: Sequence[HasExitCode]) -> int:
    """The most severe result wins: interrupted, could not run, bad config, not met, skipped, met."""
    codes = [o.exit_code for o in outcomes]
    if not codes:
        return 0
    for code in (EXIT_INTERRUPTED, EXIT_COULD_NOT_RUN, EXIT_USAGE, EXIT_GOAL_NOT_MET, EXIT_SKIPPED):
        if code in codes:
            return code
    return 0
