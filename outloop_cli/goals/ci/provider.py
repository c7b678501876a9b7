"""What a CI provider tells the CI goal, and how the verdict is reached from it.

A provider (GitHub checks, GitLab pipelines) turns its API's answers into
``Check`` values; ``judge`` decides from those alone, the same way for every
provider, so the rules below are written once:

- green: at least one check, every (required) check completed, and every
  conclusion is ``success``, ``neutral`` or ``skipped``;
- anything else that completed (``failure``, ``cancelled``, ``stale``,
  ``timed_out``, ``action_required``, ``startup_failure``, ``error``…) is red;
- a check still queued or running, or a required check not reported yet,
  keeps the verdict pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "GREEN_CONCLUSIONS",
    "CIProvider",
    "CISnapshot",
    "Check",
    "CheckDetail",
    "Verdict",
    "judge",
]

GREEN_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})


@dataclass(frozen=True)
class Check:
    """One CI check on a commit: a check run, a commit status or a pipeline job."""

    name: str
    # "pending" (queued, in progress, waiting) or "completed"
    state: str
    # lower-case conclusion once completed: success, failure, cancelled, …
    conclusion: str | None = None
    # "check run", "status", "job" — for messages
    kind: str = "check run"
    url: str | None = None
    # the provider's id, to fetch details later
    ref: str = ""
    # what the provider said in one line (a status's description, a job's stage)
    description: str = ""

    @property
    def completed(self) -> bool:
        return self.state == "completed"

    @property
    def green(self) -> bool:
        return self.completed and self.conclusion in GREEN_CONCLUSIONS


@dataclass(frozen=True)
class CISnapshot:
    """Every check a provider reports for a commit at one moment."""

    checks: tuple[Check, ...]
    # what the provider calls the overall state (GitHub combined status, GitLab pipeline)
    overall: str | None = None
    # a sentence on why there may be no checks (no pipeline yet, …)
    note: str = ""
    # False while the provider says the whole is still running even though every
    # check listed is done (a GitLab pipeline about to retry a failed job)
    settled: bool = True


@dataclass(frozen=True)
class CheckDetail:
    """Feedback on one failing check: its summary, annotations, log excerpt."""

    check: Check
    title: str = ""
    summary: str = ""
    annotations: tuple[str, ...] = ()
    log_excerpt: str = ""


class CIProvider(Protocol):
    """One forge's view of CI on a commit."""

    @property
    def label(self) -> str:
        """E.g. ``GitHub checks on octo/widgets``."""
        ...

    def snapshot(self, sha: str) -> CISnapshot:
        """Every check on ``sha`` as the forge reports it now."""
        ...

    def details(self, sha: str, failing: Sequence[Check]) -> list[CheckDetail]:
        """What the forge can say about why these checks failed (bounded in size)."""
        ...


@dataclass(frozen=True)
class Verdict:
    """What the checks that matter say about a commit: pending, green or red, and which checks made it so."""

    # "pending" | "green" | "red"
    state: str
    relevant: tuple[Check, ...] = ()
    failing: tuple[Check, ...] = ()
    pending: tuple[Check, ...] = ()
    missing: tuple[str, ...] = ()
    ignored: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def done(self) -> bool:
        return self.state != "pending"

    @property
    def no_checks(self) -> bool:
        return not self.relevant and not self.missing


def judge(snapshot: CISnapshot, required: Sequence[str] = ()) -> Verdict:
    checks = snapshot.checks
    if required:
        wanted = set(required)
        relevant = tuple(c for c in checks if c.name in wanted)
        ignored = tuple(c for c in checks if c.name not in wanted)
        present = {c.name for c in relevant}
        missing = tuple(name for name in required if name not in present)
    else:
        relevant, ignored, missing = tuple(checks), (), ()
    pending = tuple(c for c in relevant if not c.completed)
    failing = tuple(c for c in relevant if c.completed and not c.green)
    state = "red" if failing else "green"
    if not relevant or missing or pending or not snapshot.settled:
        state = "pending"
    return Verdict(state, relevant, failing, pending, missing, ignored)
