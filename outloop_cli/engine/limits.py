"""When a run stops: pure decisions from what the run has counted so far.

No clock, no file, no process: the loop passes in the numbers (elapsed time,
cost, tokens, the turn's results) and gets back a :class:`Stop` or None. The
order of the checks is part of the contract: a turn that meets the goal ends
the run as ``goal_met`` even when it was also the agent's last allowed error.
"""

from __future__ import annotations

from dataclasses import dataclass

from outloop_cli.config.model import LimitsConfig
from outloop_cli.store.records import AgentResult, GoalResult, StopReason
from outloop_cli.timefmt import format_seconds


@dataclass(frozen=True)
class Stop:
    """Why a run ends, and one sentence for the user (``run.json``'s ``stop_detail``)."""

    reason: StopReason
    detail: str


@dataclass(frozen=True)
class Counters:
    """What the limits count from turn to turn."""

    # agent turns in a row that failed
    agent_errors: int = 0
    # turns in a row that changed nothing or failed exactly as the one before
    stall: int = 0
    # the goal's last verdict (the baseline's before the first turn)
    last_goal: GoalResult | None = None


def before_turn(
    limits: LimitsConfig, *, elapsed: float, cost: float | None, tokens: int | None
) -> Stop | None:
    """The budgets a next turn must not start without: time, then cost, then tokens."""
    if limits.max_time is not None and limits.max_time - elapsed <= 0:
        return Stop(StopReason.MAX_TIME, f"the time limit ({_fmt(limits.max_time)}) was reached")
    if limits.max_cost_usd is not None and cost is not None and cost >= limits.max_cost_usd:
        return Stop(
            StopReason.MAX_COST, f"spent ${cost:.2f} of the ${limits.max_cost_usd:.2f} budget"
        )
    if limits.max_tokens is not None and tokens is not None and tokens >= limits.max_tokens:
        return Stop(StopReason.MAX_TOKENS, f"used {tokens} of the {limits.max_tokens} token budget")
    return None


def after_turn(
    counters: Counters,
    limits: LimitsConfig,
    *,
    n: int,
    max_iterations: int,
    agent: AgentResult,
    goal: GoalResult,
    changed_nothing: bool,
) -> tuple[Counters, Stop | None]:
    """Count turn ``n``, then decide: goal met, agent errors, stall, then the iteration limit."""
    last = counters.last_goal
    same_failure = last is not None and not goal.met and goal.signature == last.signature
    counted = Counters(
        agent_errors=counters.agent_errors + 1 if not agent.ok else 0,
        stall=counters.stall + 1 if (changed_nothing or same_failure) else 0,
        last_goal=goal,
    )
    if goal.met:
        return counted, Stop(StopReason.GOAL_MET, f"the goal was met after {n} iteration(s)")
    if counted.agent_errors >= limits.max_agent_errors:
        return counted, Stop(
            StopReason.AGENT_ERROR,
            f"the agent failed {counted.agent_errors} turn(s) in a row (last: {agent.error})",
        )
    if counted.stall >= limits.stall:
        return counted, Stop(
            StopReason.STALLED,
            f"{counted.stall} iteration(s) in a row changed nothing or failed exactly as before",
        )
    if n >= max_iterations:
        return counted, out_of_iterations(max_iterations)
    return counted, None


def out_of_iterations(max_iterations: int) -> Stop:
    """The last allowed turn is over (or, on resume, none is left) without meeting the goal."""
    return Stop(
        StopReason.MAX_ITERATIONS, f"the goal was not met within {max_iterations} iteration(s)"
    )


def met_before_any_turn(*, resumed: bool) -> Stop:
    if resumed:
        return Stop(StopReason.GOAL_MET, "the goal was met before the run was resumed")
    return Stop(StopReason.GOAL_MET, "the goal already held before any agent turn")


def out_of_time_during_turn(limits: LimitsConfig) -> Stop:
    return Stop(
        StopReason.MAX_TIME,
        f"the time limit ({_fmt(limits.max_time)}) ran out during the agent's turn",
    )


def cancelled(*, interrupted: bool, when: str) -> Stop:
    """A stop someone asked for: Ctrl-C (``interrupted``) or ``outloop stop`` (``stopped``)."""
    if interrupted:
        return Stop(StopReason.INTERRUPTED, f"interrupted by the user {when}")
    return Stop(StopReason.STOPPED, f"stopped on request (`outloop stop`) {when}")


def _fmt(seconds: float | None) -> str:
    return format_seconds(seconds) if seconds is not None else "none"
