"""The CI goal: met when every check on the pushed commit is green.

The engine pushes the scratch branch, then calls ``evaluate`` with the pushed
commit (``GoalContext.head_sha``) and the run's ``ForgeSession``. We poll
the provider until the verdict is final and has held for two polls in a row
(a rerun or a late workflow can still change it right after the last check
finishes), the checks never appear within the grace period, or the timeout
passes. Polls slow down from ``poll`` to ``max_poll`` while nothing changes,
and every GET is conditional, so a long wait costs little rate limit.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from outloop_cli.config.model import CIGoalConfig
from outloop_cli.errors import CouldNotRun
from outloop_cli.forges.http import ForgeAuthError, ForgeError, RateLimited
from outloop_cli.forges.session import (
    ACTIONS_TOKEN_WARNING,
    MAYBE_ACTIONS_TOKEN_WARNING,
    ForgeSession,
)
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.ci.provider import (
    Check,
    CheckDetail,
    CIProvider,
    CISnapshot,
    Verdict,
    judge,
)
from outloop_cli.store.records import GoalResult, TestCase, TestCounts
from outloop_cli.timefmt import format_seconds

DEFAULT_POLL = 10.0
DEFAULT_MAX_POLL = 60.0
DEFAULT_GRACE = 120.0
FEEDBACK_CHARS = 16_000
# statuses GitHub gives a commit it does not know yet (just pushed, not replicated)
_NOT_YET = (404, 422)


@dataclass(frozen=True)
class CITiming:
    """How often to poll a CI provider, how far to back off, and how long to wait for checks to appear."""

    poll: float = DEFAULT_POLL
    max_poll: float = DEFAULT_MAX_POLL
    grace: float = DEFAULT_GRACE

    @classmethod
    def for_config(cls, ci: CIGoalConfig) -> CITiming:
        """From the config when it has the fields, else ``OUTLOOP_CI_*`` variables, else defaults."""

        def pick(attr: str, env: str, default: float) -> float:
            value = getattr(ci, attr, None)
            if value is not None:
                return float(value)
            raw = os.environ.get(env)
            if raw:
                try:
                    return max(0.01, float(raw))
                except ValueError:
                    pass
            return default

        poll = pick("poll", "OUTLOOP_CI_POLL", DEFAULT_POLL)
        return cls(
            poll=poll,
            max_poll=max(poll, pick("max_poll", "OUTLOOP_CI_MAX_POLL", DEFAULT_MAX_POLL)),
            grace=pick("grace", "OUTLOOP_CI_GRACE", DEFAULT_GRACE),
        )


ProviderFactory = Callable[[ForgeSession], CIProvider]


def provider_for(session: ForgeSession) -> CIProvider:
    if session.provider == "gitlab":
        from outloop_cli.goals.ci.gitlab import GitLabPipelines

        return GitLabPipelines(session)
    from outloop_cli.goals.ci.github import GitHubChecks

    return GitHubChecks(session)


class CIVerifier:
    def __init__(self, ci: CIGoalConfig, *, timing: CITiming | None = None) -> None:
        self.ci = ci
        self.timing = timing or CITiming.for_config(ci)

    @property
    def label(self) -> str:
        where = f" {self.ci.repo}" if self.ci.repo else ""
        checks = f" ({', '.join(self.ci.required_checks)})" if self.ci.required_checks else ""
        return f"CI: {self.ci.provider}{where}{checks}"

    @property
    def produced_paths(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: GoalContext) -> GoalResult:
        sha = ctx.head_sha
        session = ctx.forge
        if not sha or session is None:
            raise CouldNotRun(
                "the CI goal needs the pushed commit and a forge session, and the engine gave none",
                hint="a CI goal pushes the branch after every iteration; check `push` and the "
                f"`{self.ci.provider}` secret",
            )
        provider = provider_for(session)
        waiter = _Wait(self, ctx, provider, session, sha)
        return waiter.run()


class _Wait:
    """One evaluation: poll until final, time out, or give up on checks that never came."""

    def __init__(
        self,
        verifier: CIVerifier,
        ctx: GoalContext,
        provider: CIProvider,
        session: ForgeSession,
        sha: str,
    ) -> None:
        self.ci = verifier.ci
        self.timing = verifier.timing
        self.ctx = ctx
        self.provider = provider
        self.session = session
        self.sha = sha
        self.started = time.monotonic()
        timeout = self.ci.timeout
        if ctx.time_left is not None:
            timeout = max(1.0, min(timeout, ctx.time_left))
        self.timeout = timeout
        self.history: list[str] = []
        self.last_error: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> GoalResult:
        client = self.session.client
        client.deadline = client.clock() + self.timeout
        interval = self.timing.poll
        previous: tuple[str, str] | None = None
        last_key = ""
        snapshot = CISnapshot(())
        verdict = judge(snapshot, self.ci.required_checks)
        try:
            while True:
                try:
                    snapshot = self.provider.snapshot(self.sha)
                    self.last_error = None
                except ForgeAuthError:
                    raise
                except RateLimited as exc:
                    return self._finish(verdict, snapshot, ended="rate_limited", note=exc.message)
                except ForgeError as exc:
                    if exc.status not in _NOT_YET and exc.status is not None and exc.status < 500:
                        raise
                    self.last_error = exc.message
                    snapshot = CISnapshot((), note=exc.message)
                verdict = judge(snapshot, self.ci.required_checks)
                key = _state_key(verdict)
                if key != last_key:
                    self.history.append(f"[{format_seconds(self.elapsed())}] {_describe(verdict)}")
                    last_key = key
                    interval = self.timing.poll
                else:
                    interval = min(self.timing.max_poll, interval * 1.5)
                if verdict.done:
                    current = (verdict.state, key)
                    # final only once the same verdict is seen twice in a row
                    if previous == current:
                        return self._finish(verdict, snapshot)
                    previous = current
                    interval = self.timing.poll
                else:
                    previous = None
                    if verdict.no_checks and self.elapsed() >= min(self.timing.grace, self.timeout):
                        return self._finish(verdict, snapshot, ended="no_checks")
                left = self.timeout - self.elapsed()
                if left <= 0:
                    return self._finish(verdict, snapshot, ended="timeout")
                cancel = self.ctx.cancel
                pause = min(interval, left)
                if cancel is not None:
                    if cancel.wait(pause):
                        return self._finish(verdict, snapshot, ended="cancelled")
                else:
                    time.sleep(pause)
        finally:
            client.deadline = None

    # -- the result -----------------------------------------------------------

    def _finish(
        self, verdict: Verdict, snapshot: CISnapshot, *, ended: str = "", note: str = ""
    ) -> GoalResult:
        short = self.sha[:10]
        relevant = verdict.relevant
        green = [c for c in relevant if c.green]
        met = verdict.state == "green" and not ended
        if met:
            summary = f"{len(green)} check(s) green on {short}"
        elif ended == "no_checks":
            summary = (
                f"no checks appeared on {short} within {format_seconds(min(self.timing.grace, self.timeout))}"
                + (f" ({snapshot.note})" if snapshot.note else "")
            )
        elif ended == "timeout":
            waiting = [c.name for c in verdict.pending] + list(verdict.missing)
            summary = f"timed out after {format_seconds(self.timeout)} waiting for CI on {short}"
            if waiting:
                summary += f"; still waiting for {_names(waiting)}"
            if verdict.failing:
                summary += f"; failed so far: {_names(_failed(verdict.failing))}"
        elif ended == "cancelled":
            summary = f"cancelled while waiting for CI on {short}"
        elif ended == "rate_limited":
            summary = f"stopped waiting for CI on {short}: {note}"
        else:
            summary = f"{len(verdict.failing)} of {len(relevant)} check(s) not green on {short}: {_names(_failed(verdict.failing))}"
        if verdict.ignored and self.ci.required_checks:
            summary += f" ({len(verdict.ignored)} check(s) outside required_checks ignored)"
        details: list[CheckDetail] = []
        if verdict.failing and not met:
            try:
                details = self.provider.details(self.sha, verdict.failing)
            except ForgeAuthError:
                raise
            except ForgeError as exc:
                self.history.append(f"could not fetch details: {exc.message}")
        feedback = self._feedback(verdict, details, ended)
        feedback = self._mask(feedback)
        log_name = f"logs/iter-{self.ctx.iteration:03d}-goal.log"
        log_path = self.ctx.run_dir / log_name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(
            "\n".join([f"{self.provider.label}, commit {self.sha}", *self.history, "", feedback])
            + "\n"
        )
        failing_names = [f"{c.name} ({c.conclusion})" for c in verdict.failing]
        failing_names += [f"{c.name} (did not finish)" for c in verdict.pending if ended]
        failing_names += [f"{name} (never reported)" for name in verdict.missing if ended]
        counts = TestCounts(
            total=len(relevant) + len(verdict.missing),
            passed=len([c for c in green if c.conclusion != "skipped"]),
            failed=len(failing_names),
            skipped=len([c for c in green if c.conclusion == "skipped"]),
        )
        return GoalResult(
            met=met,
            exit_code=(0 if met else 1) if not ended else None,
            duration=self.elapsed(),
            timed_out=ended == "timeout",
            summary=self._mask(summary),
            tests=counts,
            failing=failing_names,
            cases=_cases(self.session.provider, verdict, details, ended, self._mask),
            signature=_signature(met, ended, verdict),
            output_tail=feedback[-FEEDBACK_CHARS:],
            log=log_name,
        )

    def _feedback(self, verdict: Verdict, details: Sequence[CheckDetail], ended: str) -> str:
        lines: list[str] = []
        if ended == "no_checks":
            lines.append(
                "No CI checks were reported for this commit. CI may not be configured to run on "
                "this branch, or the push did not start any workflow."
            )
            lines += [
                w
                for w in self.session.warnings
                if w in (ACTIONS_TOKEN_WARNING, MAYBE_ACTIONS_TOKEN_WARNING)
            ]
        if self.last_error:
            lines.append(f"Last API error: {self.last_error}")
        for detail in details:
            check = detail.check
            lines.append(f"## {check.kind} `{check.name}`: {check.conclusion}")
            if check.url:
                lines.append(check.url)
            if detail.title:
                lines.append(detail.title)
            if detail.summary:
                lines.append(detail.summary.strip())
            if detail.annotations:
                lines.append("Annotations:")
                lines += [f"- {a}" for a in detail.annotations]
            if detail.log_excerpt:
                lines += ["Log (end):", detail.log_excerpt]
            lines.append("")
        if ended and verdict.pending:
            lines.append(
                "Still running when outloop stopped waiting: "
                + _names(c.name for c in verdict.pending)
            )
        if ended and verdict.missing:
            lines.append("Required checks never reported: " + _names(verdict.missing))
        return "\n".join(lines).strip()

    def _mask(self, text: str) -> str:
        for value in self.session.secret_values():
            text = text.replace(value, "***")
        if self.ctx.transform is not None:
            text = self.ctx.transform(text.encode()).decode("utf-8", errors="replace")
        return text


def _failed(checks: Sequence[Check]) -> list[str]:
    return [f"{c.name} ({c.conclusion})" for c in checks]


def _names(names: Iterable[str]) -> str:
    items = list(names)
    shown = ", ".join(str(n) for n in items[:8])
    return shown + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def _describe(verdict: Verdict) -> str:
    if verdict.no_checks:
        return "no checks yet"
    parts = [f"{len(verdict.relevant)} check(s)"]
    if verdict.pending:
        parts.append(f"{len(verdict.pending)} running")
    if verdict.failing:
        parts.append("failed: " + _names(_failed(verdict.failing)))
    if verdict.missing:
        parts.append("not reported yet: " + _names(verdict.missing))
    parts.append(f"verdict {verdict.state}")
    return ", ".join(parts)


def _state_key(verdict: Verdict) -> str:
    parts = sorted(f"{c.kind}:{c.name}:{c.ref}:{c.state}:{c.conclusion}" for c in verdict.relevant)
    return "|".join([verdict.state, *parts, *verdict.missing])


def _signature(met: bool, ended: str, verdict: Verdict) -> str:
    digest = hashlib.sha256(f"ci:{met}:{ended}\n".encode())
    for line in sorted(f"{c.name}:{c.conclusion}" for c in verdict.failing):
        digest.update(line.encode() + b"\n")
    for name in sorted(verdict.missing):
        digest.update(f"missing:{name}\n".encode())
    return digest.hexdigest()


def _cases(
    provider: str,
    verdict: Verdict,
    details: Sequence[CheckDetail],
    ended: str,
    mask: Callable[[str], str],
) -> list[TestCase]:
    by_ref = {d.check.ref: d for d in details}
    cases = []
    for check in verdict.relevant:
        if check.green:
            outcome = "skipped" if check.conclusion == "skipped" else "passed"
        elif check.completed:
            outcome = "failed"
        else:
            outcome = "error" if ended else "skipped"
        detail = by_ref.get(check.ref)
        text = None
        if detail is not None:
            text = (
                "\n".join(
                    p for p in (detail.summary, *detail.annotations, detail.log_excerpt) if p
                )[:4000]
                or None
            )
        cases.append(
            TestCase(
                classname=f"ci.{provider}",
                name=check.name,
                outcome=outcome,
                message=check.conclusion if outcome in ("failed", "error") else None,
                details=mask(text) if text else None,
            )
        )
    return cases
