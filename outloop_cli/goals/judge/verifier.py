"""One judgment of one iteration's commit: the prompt, N fresh judge sessions, the verdict.

The engine (:mod:`outloop_cli.engine.judge`) gives the read-only view of the
commit, the model API's environment and the sandbox; this module decides what
the judge is shown and what its answers mean. Each vote is a new process with
a state directory of its own, so no vote sees another's session.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.agents.usage import Report, add, read_log
from outloop_cli.config.model import JudgeConfig
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.judge import presets
from outloop_cli.goals.judge.prompt import Review, build_prompt, criteria_of, new_nonce
from outloop_cli.goals.judge.verdict import JUDGE_ERROR, VerdictError, Vote, validate
from outloop_cli.goals.judge.voting import tally
from outloop_cli.process.spawn import ProgramNotFound, run_streamed
from outloop_cli.store.records import GoalResult, JudgeResult, TestCase
from outloop_cli.timefmt import format_seconds


class JudgeOnlyVerifier:
    """The goal of a loop whose only check is the judge: nothing to run before it."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config

    @property
    def label(self) -> str:
        return judge_label(self.config)

    @property
    def produced_paths(self) -> tuple[str, ...]:
        return ()

    def evaluate(self, ctx: GoalContext) -> GoalResult:
        return GoalResult(met=True, exit_code=None, duration=0.0, summary="no command to run")


def judge_label(config: JudgeConfig) -> str:
    return f"judge ({config.preset}) against {config.spec}"


@dataclass(frozen=True)
class JudgeContext:
    """What the engine gives one judgment."""

    # a read-only checkout of the commit under review: the judge's working directory
    view: Path
    run_dir: Path
    iteration: int
    # the model API's variables (proxy URL, sentinel key) and OUTLOOP_*; no secret
    env: Mapping[str, str]
    # wraps argv in the run's sandbox with ``view`` read-only and the state dir writable
    contain: Callable[[Sequence[str], Path], list[str]]
    cancel: threading.Event | None = None
    transform: Callable[[bytes], bytes] | None = None
    time_left: float | None = None
    # the judge runs in the run's sandbox (a session keyring of its own, a PID namespace)
    sandboxed: bool = False


def judge(config: JudgeConfig, review: Review, ctx: JudgeContext) -> JudgeResult:
    """Ask ``config.votes`` fresh judges about ``review``; the majority per criterion."""
    criteria = criteria_of(config.criteria)
    prefix = f"logs/iter-{ctx.iteration:03d}-judge"
    prompt = build_prompt(review, new_nonce())
    prompt_name = f"{prefix}-prompt.md"
    (ctx.run_dir / prompt_name).write_text(prompt)
    started = time.monotonic()
    votes: list[Vote | str] = []
    errors: list[str] = []
    logs: list[str] = []
    inputs: int | None = None
    outputs: int | None = None
    cost: float | None = None
    for number in range(1, config.votes + 1):
        log_name = f"{prefix}-{number}.log"
        logs.append(log_name)
        state = ctx.run_dir / "judge" / f"iter-{ctx.iteration:03d}" / f"vote-{number}"
        left = None if ctx.time_left is None else ctx.time_left - (time.monotonic() - started)
        vote, report = _one_vote(config, ctx, prompt, state, log_name, len(criteria), left)
        inputs = add(inputs, report.input_tokens)
        outputs = add(outputs, report.output_tokens)
        if report.cost_usd is not None:
            cost = (cost or 0.0) + report.cost_usd
        votes.append(vote)
        if isinstance(vote, str):
            errors.append(f"vote {number}: {vote}")
        if ctx.cancel is not None and ctx.cancel.is_set():
            break
    verdicts = tally(criteria, votes)
    return JudgeResult(
        preset=config.preset,
        met=all(v.met for v in verdicts),
        criteria=verdicts,
        votes=len(votes),
        errors=errors,
        input_tokens=inputs,
        output_tokens=outputs,
        cost_usd=cost,
        duration=time.monotonic() - started,
        prompt=prompt_name,
        logs=logs,
    )


def _one_vote(
    config: JudgeConfig,
    ctx: JudgeContext,
    prompt: str,
    state: Path,
    log_name: str,
    count: int,
    time_left: float | None,
) -> tuple[Vote | str, Report]:
    invocation = presets.call(config, state, count)
    timeout = config.timeout
    if time_left is not None:
        timeout = max(1.0, min(timeout, time_left))
    try:
        result = run_streamed(
            ctx.contain(invocation.argv, state),
            cwd=ctx.view,
            env={**ctx.env, **invocation.env},
            log_path=ctx.run_dir / log_name,
            timeout=timeout,
            cancel=ctx.cancel,
            stdin_data=prompt.encode(),
            transform=ctx.transform,
            sandboxed=ctx.sandboxed,
        )
    except ProgramNotFound as exc:
        return f"{JUDGE_ERROR}: {exc.message}", Report()
    answer = presets.read_answer(config, read_log(result.log_path), state)
    if result.timed_out:
        return f"{JUDGE_ERROR}: no verdict within {format_seconds(timeout)}", answer.report
    if result.cancelled:
        return f"{JUDGE_ERROR}: cancelled", answer.report
    if answer.error is not None or answer.value is None:
        why = answer.error or "no answer"
        if result.exit_code != 0:
            why += f" (exit {result.exit_code})"
        return f"{JUDGE_ERROR}: {_flat(why)}", answer.report
    try:
        return validate(answer.value, count), answer.report
    except VerdictError as exc:
        return f"{JUDGE_ERROR}: {exc}", answer.report


def _flat(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def combine(inner: GoalResult, verdict: JudgeResult, *, judge_only: bool) -> GoalResult:
    """The goal's result once the judge has spoken: met only when both hold."""
    failed = [c for c in verdict.criteria if not c.met]
    words = f"judge: {len(verdict.criteria) - len(failed)} of {len(verdict.criteria)} criteria met"
    if verdict.votes > 1:
        words += f" ({verdict.votes} votes)"
    if verdict.errors:
        words += f", {len(verdict.errors)} {JUDGE_ERROR}"
    digest = hashlib.sha256(inner.signature.encode() + b"\n")
    for c in failed:
        # the same criteria failing for the same reasons is no progress (limits.after_turn)
        digest.update(f"{c.criterion}\x00{c.reason}\n".encode())
    cases = [
        *inner.cases,
        *(
            TestCase(
                classname="judge",
                name=c.criterion,
                time=round(verdict.duration / max(1, len(verdict.criteria)), 3),
                outcome="passed"
                if c.met
                else ("error" if c.reason.startswith(JUDGE_ERROR) else "failed"),
                message=None if c.met else c.reason,
                details="\n".join([c.reason, *c.dissent]) if (c.dissent or not c.met) else None,
            )
            for c in verdict.criteria
        ),
    ]
    return GoalResult(
        met=inner.met and verdict.met,
        exit_code=inner.exit_code,
        duration=inner.duration + verdict.duration,
        timed_out=inner.timed_out,
        summary=words if judge_only else f"{inner.summary}; {words}",
        tests=inner.tests,
        failing=inner.failing,
        cases=cases,
        signature=digest.hexdigest(),
        output_tail=inner.output_tail,
        log=inner.log,
        junit=inner.junit,
        judge=verdict,
    )
