"""``outloop run``: plan every requested loop first, then run them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outloop_cli.engine import (
    LoopPlan,
    LoopRun,
    Observer,
    RunOptions,
    committed_loop_names,
    plan_loop,
)
from outloop_cli.errors import EXIT_INTERRUPTED, ConfigError, Problem, UsageError
from outloop_cli.records import RunRecord, StopReason
from outloop_cli.runstore import RunPaths
from outloop_cli.workspace import Repository, discover


@dataclass(frozen=True)
class RunOutcome:
    record: RunRecord
    paths: RunPaths

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
    cancel: threading.Event | None = None,
) -> list[RunOutcome]:
    outcomes: list[RunOutcome] = []
    for plan in plans:
        run = LoopRun(plan, options, observer=observer, cancel=cancel)
        run.start()
        record = run.execute()
        outcomes.append(RunOutcome(record, run.paths))
        if record.stop_reason is StopReason.INTERRUPTED:
            break
    return outcomes


def combined_exit_code(outcomes: Sequence[RunOutcome]) -> int:
    codes = [o.record.exit_code or 0 for o in outcomes]
    if EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED
    return max(codes, default=0)
