"""``outloop run LOOP --repo PATH…``: the same loop in many repositories, ``--jobs N`` at once.

Each repository is planned and run exactly as a lone ``outloop run`` there
would be (``commands/run.py``'s planning, the engine's ``LoopRun``): its own
worktree, broker, workspace (the user's policy decides, per repository) and
audit chain. What differs is only that one repository's failure — a missing
loop, a bad loop file, a refused secret, a run that cannot start or breaks —
is that repository's result, never a reason to stop, skip or wait for the
others. Ctrl-C stops every run the way it stops one (``interrupted``), and a
repository whose run had not started yet is reported as not started.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from outloop_cli.commands.run import RunOutcome, plan_loops, run_concurrently, start_and_execute
from outloop_cli.config.repo_groups import RepoTarget
from outloop_cli.engine.events import Event, Observer
from outloop_cli.engine.loop import LoopRun
from outloop_cli.engine.plan import LoopPlan, RunOptions
from outloop_cli.errors import EXIT_COULD_NOT_RUN, EXIT_INTERRUPTED, EXIT_USAGE, OutloopError

NOT_STARTED = "not_started"
FAILED = "failed"


@dataclass(frozen=True)
class RepoOutcome:
    """What became of one run (or one repository that could not have one)."""

    repo: str
    # what the user wrote that named it (`~/clients/*`, `@clients`)
    given: str
    loop: str | None = None
    outcome: RunOutcome | None = None
    # why there is no outcome: not started, or the run broke; rendered for the user
    error: str | None = None
    error_exit: int = EXIT_COULD_NOT_RUN
    # a run that broke after it had started has an id (and a record to resume from)
    run_id: str | None = None

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code if self.outcome is not None else self.error_exit

    @property
    def label(self) -> str:
        return f"{self.repo} ({self.loop})" if self.loop else self.repo

    def as_json(self) -> dict[str, Any]:
        if self.outcome is not None:
            return {"repo": self.repo, **self.outcome.as_json()}
        return {
            "repo": self.repo,
            "given": self.given,
            "loop": self.loop,
            "run_id": self.run_id,
            "state": FAILED if self.run_id else NOT_STARTED,
            "stop_reason": None,
            "exit_code": self.exit_code,
            "error": self.error,
        }


@dataclass(frozen=True)
class RepoSlot:
    """One repository, planned: its loop plans, or the failure that stands in for them."""

    target: RepoTarget
    plans: tuple[LoopPlan, ...] = ()
    failure: RepoOutcome | None = None


def plan_repos(
    targets: Sequence[RepoTarget],
    loops: Sequence[str],
    options: RunOptions,
    *,
    run_all: bool = False,
) -> list[RepoSlot]:
    """Plan the loops of every repository; a repository that fails is a slot with its failure."""
    slots: list[RepoSlot] = []
    seen: set[str] = set()
    for target in targets:
        repo = str(target.path)
        if target.problem is not None:
            failure = RepoOutcome(repo, target.given, error=target.problem, error_exit=EXIT_USAGE)
            slots.append(RepoSlot(target, failure=failure))
            continue
        try:
            plans = plan_loops(target.path, loops, options, run_all=run_all)
        except OutloopError as exc:
            failure = RepoOutcome(
                repo, target.given, loop=_one(loops), error=exc.render(), error_exit=exc.exit_code
            )
            slots.append(RepoSlot(target, failure=failure))
            continue
        common = str(plans[0].repo.info.common_dir.resolve()) if plans else repo
        if common in seen:
            # the same repository named twice (a path and a glob, a subdirectory): one run
            continue
        seen.add(common)
        slots.append(RepoSlot(target, plans=tuple(plans)))
    return slots


def execute_repos(
    slots: Sequence[RepoSlot], options: RunOptions, *, observer: Observer, jobs: int = 1
) -> list[RepoOutcome]:
    """Run every planned loop, ``jobs`` at a time; results in the order the repositories came."""
    interrupt = threading.Event()
    labels = _labels(slots)
    runs: list[LoopRun] = []
    owners: list[tuple[RepoSlot, LoopPlan]] = []
    for slot in slots:
        for plan in slot.plans:
            label = labels[str(plan.repo.info.root)]
            runs.append(
                LoopRun(plan, options, observer=_labelled(observer, label), interrupt=interrupt)
            )
            owners.append((slot, plan))

    def job(run: LoopRun) -> RunOutcome | tuple[str, int, str | None]:
        return _isolated(run, interrupt)

    results = run_concurrently(runs, max(1, jobs), interrupt, job) if runs else []
    by_plan = {id(plan): result for (_, plan), result in zip(owners, results, strict=True)}
    outcomes: list[RepoOutcome] = []
    for slot in slots:
        if slot.failure is not None:
            outcomes.append(slot.failure)
            continue
        for plan in slot.plans:
            result = by_plan[id(plan)]
            repo = str(plan.repo.info.root)
            if isinstance(result, RunOutcome):
                outcomes.append(RepoOutcome(repo, slot.target.given, plan.config.name, result))
            else:
                error, code, run_id = result
                outcomes.append(
                    RepoOutcome(
                        repo,
                        slot.target.given,
                        plan.config.name,
                        error=error,
                        error_exit=code,
                        run_id=run_id,
                    )
                )
    return outcomes


def _isolated(run: LoopRun, interrupt: threading.Event) -> RunOutcome | tuple[str, int, str | None]:
    """One run, whatever happens to it: its outcome, or (why it failed, exit code, run id)."""
    if interrupt.is_set():
        return "not started: interrupted by the user", EXIT_INTERRUPTED, None
    try:
        return start_and_execute(run)
    except OutloopError as exc:
        return exc.render(), exc.exit_code, _run_id(run)
    except Exception as exc:
        return f"outloop failed: {type(exc).__name__}: {exc}", EXIT_COULD_NOT_RUN, _run_id(run)


def _run_id(run: LoopRun) -> str | None:
    record = run.record
    return record.run_id if record is not None else None


def _labels(slots: Sequence[RepoSlot]) -> dict[str, str]:
    """A short name per repository for the progress view: its folder, or its path when two share one."""
    roots = {str(plan.repo.info.root) for slot in slots for plan in slot.plans}
    names: dict[str, int] = {}
    for root in roots:
        name = root.rstrip("/").rsplit("/", 1)[-1]
        names[name] = names.get(name, 0) + 1
    labels = {}
    for root in roots:
        name = root.rstrip("/").rsplit("/", 1)[-1]
        labels[root] = name if names[name] == 1 else root
    return labels


def _labelled(observer: Observer, label: str) -> Observer:
    def tell(event: Event) -> None:
        observer(replace(event, loop=f"{label}/{event.loop}"))

    return tell


def _one(loops: Sequence[str]) -> str | None:
    return loops[0] if len(loops) == 1 else None
