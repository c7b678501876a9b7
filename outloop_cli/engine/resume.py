"""What the scratch branch says happened: the source of truth for resume.

``run.json`` is written after each step, but a crash can fall between a
commit and the next write. The branch's commits carry trailers
(``Outloop-Iteration``, ``Outloop-Goal``), so the record is brought in line
with the branch rather than the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from outloop_cli.git import trailers
from outloop_cli.git.repo import Repository
from outloop_cli.store.records import GoalResult, IterationRecord, RunRecord


@dataclass(frozen=True)
class IterationCommit:
    sha: str
    run_id: str
    iteration: int
    goal: str  # pass | fail | pending | none


def iteration_commits(
    repo: Repository, base: str, branch: str, run_id: str
) -> list[IterationCommit]:
    """Commits of this run on ``branch`` after ``base``, oldest first."""
    commits = []
    for commit in repo.trailers(
        [f"{base}..{branch}"],
        [trailers.RUN, trailers.ITERATION, trailers.GOAL],
        reverse=True,
        first_parent=True,
    ):
        run = commit.first(trailers.RUN) or ""
        iteration = commit.first(trailers.ITERATION) or ""
        if run != run_id or not iteration.isdigit():
            continue
        goal = commit.first(trailers.GOAL) or trailers.GOAL_NONE
        commits.append(IterationCommit(commit.sha, run, int(iteration), goal))
    return commits


@dataclass(frozen=True)
class Reconciled:
    last_committed: int
    dropped: list[int]
    recovered: list[int]


def reconcile(record: RunRecord, commits: list[IterationCommit]) -> Reconciled:
    """Make ``record.iterations`` agree with the branch; returns what changed.

    Iterations the record has but the branch lacks never got their commit
    (the crash came first): they are dropped and will be redone. Commits the
    record lacks (the crash came before run.json was written) are recovered
    from their trailers, with what the trailers can tell.
    """
    by_n = {c.iteration: c for c in commits}
    kept: list[IterationRecord] = []
    dropped: list[int] = []
    for it in record.iterations:
        if it.n == 0:
            kept.append(it)
            continue
        commit = by_n.get(it.n)
        if commit is None:
            dropped.append(it.n)
            continue
        it.commit = commit.sha
        kept.append(it)
    known = {it.n for it in kept}
    recovered: list[int] = []
    for commit in commits:
        if commit.iteration in known:
            continue
        goal = None
        if commit.goal in (trailers.GOAL_PASS, trailers.GOAL_FAIL):
            goal = GoalResult(
                met=commit.goal == trailers.GOAL_PASS,
                exit_code=None,
                duration=0.0,
                summary="recovered from the commit trailer after a crash",
            )
        kept.append(
            IterationRecord(n=commit.iteration, started_at="", commit=commit.sha, goal=goal)
        )
        recovered.append(commit.iteration)
    kept.sort(key=lambda it: it.n)
    record.iterations = kept
    last = max((c.iteration for c in commits), default=0)
    return Reconciled(last, dropped, recovered)
