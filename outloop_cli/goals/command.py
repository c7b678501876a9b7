"""The command goal: met when a shell command exits 0 in the worktree."""

from __future__ import annotations

import hashlib
import shutil

from outloop_cli.config.model import GoalConfig
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.junit_input import JUnitError, display_name, normalise_output, read_junit
from outloop_cli.process.spawn import run_streamed
from outloop_cli.store.records import GoalResult, TestCase, TestCounts
from outloop_cli.timefmt import format_seconds

TAIL_LINES = 80
TAIL_CHARS = 8000
MAX_FAILING_NAMES = 200


def tail_lines(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-chars:]


class CommandVerifier:
    def __init__(self, goal: GoalConfig) -> None:
        assert goal.run is not None
        self.goal = goal
        self.command = goal.run

    @property
    def label(self) -> str:
        return self.command

    @property
    def produced_paths(self) -> tuple[str, ...]:
        return (self.goal.junit,) if self.goal.junit else ()

    def evaluate(self, ctx: GoalContext) -> GoalResult:
        log_name = f"logs/iter-{ctx.iteration:03d}-goal.log"
        junit_path = ctx.workdir / self.goal.junit if self.goal.junit else None
        if junit_path is not None:
            # a report left by an earlier evaluation must not pass for this one
            junit_path.unlink(missing_ok=True)
        timeout = self.goal.timeout
        if ctx.time_left is not None:
            timeout = max(1.0, min(timeout, ctx.time_left))
        argv = ["/bin/sh", "-c", self.command]
        if ctx.contain is not None:
            argv = ctx.contain(argv, self.command)
        result = run_streamed(
            argv,
            cwd=ctx.workdir,
            env=ctx.env,
            log_path=ctx.run_dir / log_name,
            timeout=timeout,
            cancel=ctx.cancel,
            transform=ctx.transform,
            sandboxed=ctx.sandboxed,
        )
        counts: TestCounts | None = None
        cases: list[TestCase] = []
        junit_note = ""
        junit_copy: str | None = None
        if junit_path is not None:
            try:
                counts, cases = read_junit(junit_path)
                junit_copy = f"logs/iter-{ctx.iteration:03d}-goal-junit.xml"
                shutil.copyfile(junit_path, ctx.run_dir / junit_copy)
            except JUnitError as exc:
                junit_note = f" ({exc})"
        failing = [
            display_name(c.classname, c.name) for c in cases if c.outcome in ("failed", "error")
        ]
        met = result.ok
        if result.timed_out:
            how = f"timed out after {format_seconds(timeout)}"
        elif result.cancelled:
            how = "cancelled"
        else:
            how = f"exit {result.exit_code} after {format_seconds(result.duration)}"
        summary = how
        if counts is not None:
            summary += f"; {counts.passed} passed, {counts.failing} failing of {counts.total} tests"
        summary += junit_note
        return GoalResult(
            met=met,
            exit_code=result.exit_code,
            duration=result.duration,
            timed_out=result.timed_out,
            summary=summary,
            tests=counts,
            failing=failing[:MAX_FAILING_NAMES],
            cases=cases,
            signature=_signature(
                met, result.exit_code, failing if counts is not None else None, result.tail
            ),
            output_tail=tail_lines(result.tail),
            log=log_name,
            junit=junit_copy,
        )


def _signature(met: bool, exit_code: int | None, failing: list[str] | None, tail: str) -> str:
    """How the goal failed: the failing tests when known, else the de-noised output."""
    digest = hashlib.sha256()
    digest.update(f"{met}:{exit_code}\n".encode())
    if failing is not None:
        for name in sorted(failing):
            digest.update(name.encode() + b"\n")
    else:
        digest.update(normalise_output(tail.encode(errors="replace")))
    return digest.hexdigest()


__all__ = ["CommandVerifier", "tail_lines"]
