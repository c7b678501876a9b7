"""The judge step: after the goal's own check passes, a model reviews the commit against the spec.

The judge runs in a read-only checkout of the tree under review (written from
outloop's git, not the worktree the agent and the goal wrote to), in the run's
sandbox when the run has one, with the model API reached through the run's
access proxy and broker exactly as the agent reaches it. It is shown the spec as
it was in the starting commit, the criteria, the diff from the starting commit
and the verifier's result; nothing the agent said.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.engine.containment import contained_view, sandboxed
from outloop_cli.errors import CouldNotRun
from outloop_cli.goals.judge.presets import control_file
from outloop_cli.goals.judge.prompt import Review
from outloop_cli.goals.judge.verifier import JudgeContext, combine, judge
from outloop_cli.process.environment import build_env
from outloop_cli.store.records import GoalResult

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext


def judge_configured(ctx: RunContext) -> bool:
    return ctx.config.goal.judge is not None


def judge_only(ctx: RunContext) -> bool:
    goal = ctx.config.goal
    return goal.judge is not None and goal.run is None and goal.ci is None


def read_spec(ctx: RunContext) -> str:
    """The spec as the starting commit has it (the plan checked it is there)."""
    config = ctx.config.goal.judge
    assert config is not None
    raw = ctx.plan.repo.read_file(ctx.plan.base_commit, config.spec)
    if raw is None:
        raise CouldNotRun(
            f"goal.judge.spec `{config.spec}` is not in commit {ctx.plan.base_commit[:10]}",
            hint="commit the spec: the judge reads it from the starting commit",
        )
    return raw.decode("utf-8", errors="replace")


def not_reviewed(ctx: RunContext, inner: GoalResult) -> GoalResult:
    """The baseline: the judge reviews work, and before the first turn there is none."""
    words = "the judge reviews each iteration's commit; no work to review yet"
    return GoalResult(
        met=False,
        exit_code=inner.exit_code,
        duration=inner.duration,
        timed_out=inner.timed_out,
        summary=words if judge_only(ctx) else f"{inner.summary}; {words}",
        tests=inner.tests,
        failing=inner.failing,
        cases=inner.cases,
        signature=inner.signature,
        output_tail=inner.output_tail,
        log=inner.log,
        junit=inner.junit,
    )


def review_work(ctx: RunContext, n: int, inner: GoalResult, tree: str) -> GoalResult:
    """Iteration ``n``'s goal result once the judge has reviewed ``tree`` (its commit's tree)."""
    config = ctx.config.goal.judge
    assert config is not None
    ctx.emit("phase", n, f"the judge ({config.preset}) is reviewing", phase="judge")
    base = ctx.plan.base_commit
    review = Review(
        spec_path=config.spec,
        spec=read_spec(ctx),
        criteria=config.criteria,
        diff=ctx.worktree.text_diff(base, tree),
        verifier=None if judge_only(ctx) else _verifier_words(inner),
        base_commit=base,
        iteration=n,
    )
    where = ctx.paths.root / "judge" / f"iter-{n:03d}"
    view = where / "tree"
    _remove(where)
    view.mkdir(parents=True)
    ctx.worktree.export_tree(tree, view, leave_out=control_file)
    access = ctx.plan.access
    env = build_env(
        pass_env=(),
        extra=(),
        outloop_vars={
            "OUTLOOP_RUN": ctx.run_id,
            "OUTLOOP_LOOP": ctx.config.name,
            "OUTLOOP_ITERATION": str(n),
            **{k: v for k, v in access.agent_env().items() if k != "OUTLOOP_BROKER_SOCKET"},
        },
        secret_values=access.secret_values(),
    )
    access.renew(config.timeout * config.votes + 60)
    proxy = access.proxy_endpoint()
    judge_ctx = JudgeContext(
        view=view,
        run_dir=ctx.paths.root,
        iteration=n,
        env=env,
        contain=lambda argv, state: contained_view(ctx, argv, view, writable=[state], proxy=proxy),
        cancel=ctx.cancel,
        transform=ctx.masker.mask_bytes if ctx.masker else None,
        time_left=ctx.time_left(),
        sandboxed=sandboxed(ctx),
    )
    try:
        verdict = judge(config, review, judge_ctx)
    finally:
        _remove(view)
    failed = [c.criterion for c in verdict.criteria if not c.met]
    ctx.audit(
        "judge_evaluated",
        iteration=n,
        preset=config.preset,
        met=verdict.met,
        votes=verdict.votes,
        failed=len(failed),
        errors=len(verdict.errors),
        tokens=verdict.tokens,
        cost_usd=verdict.cost_usd,
    )
    return combine(inner, verdict, judge_only=judge_only(ctx))


def _verifier_words(inner: GoalResult) -> str:
    lines = [f"passed: {inner.summary}"]
    if inner.output_tail.strip():
        lines += ["last lines of its output:", inner.output_tail]
    return "\n".join(lines) + "\n"


def _remove(path: Path) -> None:
    if not path.exists():
        return
    # the view is written read-only; make it removable again
    for child in [path, *path.rglob("*")]:
        if child.is_dir() and not child.is_symlink():
            child.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)
