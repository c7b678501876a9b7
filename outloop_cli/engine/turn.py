"""The agent's turn: its prompt, its environment, its sandbox, its masked output, its verdict.

The agent runs in the worktree as a supervised child (``process/spawn.py``)
with an allow-listed environment: the loop's own variables, ``OUTLOOP_*``
and the broker's capabilities, never a granted secret's value. Its output
reaches the log only through the masker, and its time is bounded by both the
agent's timeout and what is left of the run's time limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from outloop_cli.agents.base import TurnContext
from outloop_cli.engine.containment import contained, sandboxed
from outloop_cli.engine.egress import proxy_env
from outloop_cli.engine.prompt import compose_prompt
from outloop_cli.engine.steering import deliver_notes
from outloop_cli.process.environment import build_env
from outloop_cli.process.spawn import ProgramNotFound, run_streamed
from outloop_cli.store.records import AgentResult, GoalResult
from outloop_cli.timefmt import format_seconds
from outloop_cli.triggers.event import EVENT_FILE, prompt_block

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext


@dataclass(frozen=True)
class TurnOutcome:
    """How one agent turn ended."""

    agent: AgentResult
    # the run's time limit, not the agent's own timeout, ended the turn
    out_of_time: bool


def take_turn(ctx: RunContext, n: int, last_goal: GoalResult | None) -> TurnOutcome:
    """Run the agent once in the worktree and say how it went (audited and reported)."""
    plan = ctx.plan
    worktree = ctx.worktree
    ctx.emit("phase", n, "agent working", phase="agent")
    notes = deliver_notes(ctx, n)
    prompt_text = compose_prompt(
        plan.prompt,
        goal_label=plan.verifier.label,
        last_goal=last_goal,
        iteration=n,
        max_iterations=plan.max_iterations,
        operator_notes=[(note.who, note.at, note.text) for note in notes],
        event_block=prompt_block(plan.event) if plan.event.source != "cli" else None,
    )
    event_file = ctx.paths.root / EVENT_FILE
    prompt_file = ctx.paths.logs / f"iter-{n:03d}-prompt.md"
    prompt_file.write_text(prompt_text)
    state_dir = ctx.paths.root / "agent-state"
    state_dir.mkdir(exist_ok=True)
    turn = TurnContext(
        loop=ctx.config.name,
        run_id=ctx.run_id,
        iteration=n,
        workdir=worktree.path,
        prompt_text=prompt_text,
        prompt_file=prompt_file,
        state_dir=state_dir,
        contained=sandboxed(ctx),
        event_file=event_file,
    )
    invocation = plan.agent.invocation(turn)
    agent_cfg = ctx.config.agent
    access = plan.access
    env = build_env(
        pass_env=agent_cfg.pass_env,
        extra=(*agent_cfg.env, *invocation.env.items()),
        outloop_vars={
            "OUTLOOP_RUN": ctx.run_id,
            "OUTLOOP_LOOP": ctx.config.name,
            "OUTLOOP_ITERATION": str(n),
            "OUTLOOP_WORKDIR": str(worktree.path),
            "OUTLOOP_PROMPT_FILE": str(prompt_file),
            "OUTLOOP_EVENT_FILE": str(event_file),
            **access.agent_env(),
            **proxy_env(ctx.egress.relay()),
        },
        secret_values=access.secret_values(),
    )
    timeout = agent_cfg.timeout
    left = ctx.time_left()
    limited_by_run = left is not None and left < timeout
    if left is not None:
        timeout = max(0.1, min(timeout, left))
    log_name = f"logs/iter-{n:03d}-agent.log"
    # capabilities live as long as this turn may take (plus a margin), and no longer
    access.renew(timeout + 60)
    masking = ctx.masker.stream() if ctx.masker else None
    try:
        process = run_streamed(
            contained(
                ctx,
                invocation.argv,
                writable=[state_dir, *filter(None, [plan.access.broker_socket_dir()])],
                readable=[prompt_file, event_file],
                proxy=plan.access.proxy_endpoint(),
            ),
            cwd=worktree.path,
            env=env,
            log_path=ctx.paths.root / log_name,
            timeout=timeout,
            idle_timeout=agent_cfg.idle_timeout,
            cancel=ctx.cancel,
            stdin_data=invocation.stdin,
            transform=masking,
            sandboxed=sandboxed(ctx),
        )
    except ProgramNotFound as exc:
        result = AgentResult(exit_code=None, duration=0.0, error="not_found", log=log_name)
        _report(ctx, n, result, exc.message)
        return TurnOutcome(result, out_of_time=False)
    if masking is not None:
        # the masker holds back a tail that could still turn into a secret
        with (ctx.paths.root / log_name).open("ab") as log:
            log.write(masking.flush())
    result = plan.agent.interpret(process, turn)
    out_of_time = process.timed_out and limited_by_run
    if out_of_time:
        result.error = "max_time"
    _report(ctx, n, result, "")
    return TurnOutcome(result, out_of_time)


def _report(ctx: RunContext, n: int, result: AgentResult, detail: str) -> None:
    ctx.audit(
        "agent_exited",
        iteration=n,
        exit_code=result.exit_code,
        duration=round(result.duration, 3),
        error=result.error,
        output_bytes=result.output_bytes,
        cost_usd=result.cost_usd,
    )
    verdict = "ok" if result.ok else f"failed ({result.error})"
    text = f"agent exited {result.exit_code} after {format_seconds(result.duration)}: {verdict}"
    if detail:
        text += f": {detail}"
    ctx.emit("agent_exited", n, text)
