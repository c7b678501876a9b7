"""The goal step: ask the verifier whether the goal holds, then undo what the check left behind.

The goal runs in the same worktree as the agent, in the same sandbox (it runs
code the agent wrote), with its own allow-listed environment (the goal's
variables and ``OUTLOOP_*``, no broker capability),
its output masked, and, for a CI goal, the forge and the commit it must judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from outloop_cli.engine.containment import contained, sandboxed
from outloop_cli.engine.egress import proxy_env
from outloop_cli.errors import CouldNotRun
from outloop_cli.goals.base import GoalContext
from outloop_cli.process.environment import build_env
from outloop_cli.store.records import GoalResult

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext


def _goal_env(ctx: RunContext, n: int) -> dict[str, str]:
    goal_cfg = ctx.config.goal
    return build_env(
        pass_env=goal_cfg.pass_env,
        extra=goal_cfg.env,
        outloop_vars={
            "OUTLOOP_RUN": ctx.run_id,
            "OUTLOOP_LOOP": ctx.config.name,
            "OUTLOOP_ITERATION": str(n),
            **proxy_env(ctx.egress.relay()),
        },
    )


def check_goal_tests_the_worktree(ctx: RunContext) -> None:
    """Before the baseline: a goal whose Python (or node) finds the user's checkout is refused.

    Asked while the worktree still holds only the starting commit (no agent has
    run), in the goal's environment; see :mod:`outloop_cli.goals.project_source`.
    """
    script = ctx.config.goal.run
    # asked outside the sandbox: only of the starting commit, never of an agent's work
    if script is None or ctx.worktree.head() != ctx.plan.base_commit:
        return
    from outloop_cli.goals import project_source

    packages = project_source.project_packages(ctx.worktree.path)
    node_packages = project_source.node_packages(ctx.worktree.path)
    env = _goal_env(ctx, 0)
    if not packages and not node_packages:
        return
    interpreters = project_source.goal_interpreters(script, env.get("PATH"))
    if not interpreters:
        return
    found = project_source.outside_imports(
        interpreters,
        packages,
        worktree=ctx.worktree.path,
        checkout=ctx.plan.repo.info.root,
        env=env,
        node_packages=node_packages,
    )
    if found:
        message, hint = project_source.describe(found, ctx.plan.repo.info.root)
        ctx.audit(
            "goal_tests_checkout",
            package=found[0].package,
            found_at=str(found[0].found_at),
            interpreter=str(found[0].interpreter.python),
        )
        raise CouldNotRun(message, hint=hint)


def evaluate_goal(
    ctx: RunContext, n: int, forge_fields: Mapping[str, Any], review: str | None = None
) -> GoalResult:
    """Check the goal for iteration ``n`` (0: the baseline); ``forge_fields`` feed a CI goal.

    With ``goal.judge``, ``review`` is the tree of the iteration's commit: once the
    verifier passes, the judge reviews it (:mod:`outloop_cli.engine.judge`).
    """
    ctx.emit("phase", n, "checking the goal", phase="goal")
    env = _goal_env(ctx, n)
    goal_ctx = GoalContext(
        workdir=ctx.worktree.path,
        env=env,
        run_dir=ctx.paths.root,
        iteration=n,
        cancel=ctx.cancel,
        time_left=ctx.time_left(),
        transform=ctx.masker.mask_bytes if ctx.masker else None,
        contain=lambda argv, script: contained(ctx, argv, shell_command=script),
        sandboxed=sandboxed(ctx),
        **forge_fields,
    )
    goal = ctx.plan.verifier.evaluate(goal_ctx)
    ctx.audit(
        "goal_evaluated",
        iteration=n,
        met=goal.met,
        exit_code=goal.exit_code,
        duration=round(goal.duration, 3),
        failing=len(goal.failing) if goal.tests is not None else None,
    )
    if ctx.config.goal.judge is not None:
        from outloop_cli.engine import judge

        if review is None:
            goal = judge.not_reviewed(ctx, goal)
        elif goal.met:
            goal = judge.review_work(ctx, n, goal, review)
    verdict = "goal met" if goal.met else "goal not met"
    ctx.emit("goal_evaluated", n, f"{verdict}: {goal.summary}", goal=goal)
    return goal


def restore_after_goal(ctx: RunContext) -> None:
    """Undo what the goal command changed in the worktree; files too large to commit stay."""
    undone = ctx.worktree.restore(keep=ctx.record.iterations[-1].skipped_files)
    if undone:
        ctx.note(ctx.current_n(), f"undid {len(undone)} file(s) the goal command left behind")
