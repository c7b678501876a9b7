"""When a run stops, decided from numbers alone: no repository, no process, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from outloop_cli.config.model import LimitsConfig
from outloop_cli.engine import limits
from outloop_cli.engine.limits import Counters, Stop
from outloop_cli.store.records import AgentResult, GoalResult, StopReason

LIMITS = LimitsConfig(
    max_iterations=10,
    max_time=600.0,
    max_cost_usd=2.0,
    max_tokens=1000,
    stall=3,
    max_agent_errors=2,
)


def ok() -> AgentResult:
    return AgentResult(exit_code=0, duration=1.0)


def failed() -> AgentResult:
    return AgentResult(exit_code=1, duration=1.0, error="exit")


def goal(*, met: bool = False, signature: str = "a") -> GoalResult:
    return GoalResult(met=met, exit_code=0 if met else 1, duration=0.1, signature=signature)


# -- before a turn: time, then cost, then tokens ---------------------------------


@pytest.mark.parametrize(
    ("given", "elapsed", "cost", "tokens", "expected"),
    [
        pytest.param(LIMITS, 10.0, 0.5, 100, None, id="all budgets left"),
        pytest.param(LIMITS, 599.9, None, None, None, id="a moment of time left"),
        pytest.param(
            LIMITS,
            600.0,
            None,
            None,
            Stop(StopReason.MAX_TIME, "the time limit (10m00s) was reached"),
            id="time used up exactly",
        ),
        pytest.param(
            LIMITS,
            10.0,
            2.0,
            None,
            Stop(StopReason.MAX_COST, "spent $2.00 of the $2.00 budget"),
            id="cost reaches the budget",
        ),
        pytest.param(
            LIMITS,
            10.0,
            None,
            1000,
            Stop(StopReason.MAX_TOKENS, "used 1000 of the 1000 token budget"),
            id="tokens reach the budget",
        ),
        pytest.param(
            LIMITS,
            700.0,
            5.0,
            5000,
            Stop(StopReason.MAX_TIME, "the time limit (10m00s) was reached"),
            id="time is checked first",
        ),
        pytest.param(
            LIMITS,
            10.0,
            5.0,
            5000,
            Stop(StopReason.MAX_COST, "spent $5.00 of the $2.00 budget"),
            id="cost before tokens",
        ),
        pytest.param(
            LimitsConfig(max_time=None, max_cost_usd=None, max_tokens=None),
            1e9,
            1e9,
            10**9,
            None,
            id="no budgets set",
        ),
        pytest.param(LIMITS, 10.0, None, None, None, id="an agent that reports no cost"),
    ],
)
def test_before_turn(
    given: LimitsConfig, elapsed: float, cost: float | None, tokens: int | None, expected: Stop
) -> None:
    assert limits.before_turn(given, elapsed=elapsed, cost=cost, tokens=tokens) == expected


# -- after a turn: count, then goal met, agent errors, stall, iterations ----------


@dataclass(frozen=True)
class Turn:
    agent: AgentResult = field(default_factory=ok)
    goal: GoalResult = field(default_factory=goal)
    changed_nothing: bool = False
    n: int = 1


@pytest.mark.parametrize(
    ("before", "turn", "after", "expected"),
    [
        pytest.param(
            Counters(last_goal=goal(signature="x")),
            Turn(),
            Counters(0, 0, goal()),
            None,
            id="a failing goal that changed: nothing counted",
        ),
        pytest.param(
            Counters(),
            Turn(goal=goal(met=True), agent=failed()),
            Counters(1, 0, goal(met=True)),
            Stop(StopReason.GOAL_MET, "the goal was met after 1 iteration(s)"),
            id="goal met wins over a failed agent",
        ),
        pytest.param(
            Counters(agent_errors=1, stall=2),
            Turn(goal=goal(met=True), agent=failed(), changed_nothing=True, n=10),
            Counters(2, 3, goal(met=True)),
            Stop(StopReason.GOAL_MET, "the goal was met after 10 iteration(s)"),
            id="goal met wins over every other limit",
        ),
        pytest.param(
            Counters(agent_errors=1),
            Turn(agent=failed()),
            Counters(2, 0, goal()),
            Stop(StopReason.AGENT_ERROR, "the agent failed 2 turn(s) in a row (last: exit)"),
            id="second agent error in a row",
        ),
        pytest.param(
            Counters(agent_errors=1),
            Turn(),
            Counters(0, 0, goal()),
            None,
            id="a good turn resets the agent errors",
        ),
        pytest.param(
            Counters(agent_errors=1, stall=2),
            Turn(agent=failed(), changed_nothing=True),
            Counters(2, 3, goal()),
            Stop(StopReason.AGENT_ERROR, "the agent failed 2 turn(s) in a row (last: exit)"),
            id="agent errors before stall",
        ),
        pytest.param(
            Counters(stall=2),
            Turn(changed_nothing=True),
            Counters(0, 3, goal()),
            Stop(
                StopReason.STALLED,
                "3 iteration(s) in a row changed nothing or failed exactly as before",
            ),
            id="stalled: nothing changed",
        ),
        pytest.param(
            Counters(stall=2, last_goal=goal(signature="same")),
            Turn(goal=goal(signature="same")),
            Counters(0, 3, goal(signature="same")),
            Stop(
                StopReason.STALLED,
                "3 iteration(s) in a row changed nothing or failed exactly as before",
            ),
            id="stalled: the same failure again",
        ),
        pytest.param(
            Counters(stall=2, last_goal=goal(signature="same")),
            Turn(goal=goal(signature="other")),
            Counters(0, 0, goal(signature="other")),
            None,
            id="a new failure resets the stall",
        ),
        pytest.param(
            Counters(stall=1),
            Turn(n=10),
            Counters(0, 0, goal()),
            Stop(StopReason.MAX_ITERATIONS, "the goal was not met within 10 iteration(s)"),
            id="the last allowed turn",
        ),
        pytest.param(
            Counters(stall=2),
            Turn(n=10, changed_nothing=True),
            Counters(0, 3, goal()),
            Stop(
                StopReason.STALLED,
                "3 iteration(s) in a row changed nothing or failed exactly as before",
            ),
            id="stall before the iteration limit",
        ),
    ],
)
def test_after_turn(before: Counters, turn: Turn, after: Counters, expected: Stop | None) -> None:
    counted, stop = limits.after_turn(
        before,
        LIMITS,
        n=turn.n,
        max_iterations=LIMITS.max_iterations,
        agent=turn.agent,
        goal=turn.goal,
        changed_nothing=turn.changed_nothing,
    )
    assert (counted, stop) == (after, expected)


def test_after_turn_leaves_the_counters_it_was_given_alone() -> None:
    before = Counters(agent_errors=1, stall=1)
    limits.after_turn(
        before, LIMITS, n=1, max_iterations=10, agent=failed(), goal=goal(), changed_nothing=True
    )
    assert before == Counters(agent_errors=1, stall=1)


# -- the other ways a run ends ------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (
            limits.out_of_iterations(3),
            Stop(StopReason.MAX_ITERATIONS, "the goal was not met within 3 iteration(s)"),
        ),
        (
            limits.met_before_any_turn(resumed=False),
            Stop(StopReason.GOAL_MET, "the goal already held before any agent turn"),
        ),
        (
            limits.met_before_any_turn(resumed=True),
            Stop(StopReason.GOAL_MET, "the goal was met before the run was resumed"),
        ),
        (
            limits.out_of_time_during_turn(LIMITS),
            Stop(StopReason.MAX_TIME, "the time limit (10m00s) ran out during the agent's turn"),
        ),
        (
            limits.out_of_time_during_turn(LimitsConfig(max_time=None)),
            Stop(StopReason.MAX_TIME, "the time limit (none) ran out during the agent's turn"),
        ),
        (
            limits.cancelled(interrupted=True, when="before the next turn"),
            Stop(StopReason.INTERRUPTED, "interrupted by the user before the next turn"),
        ),
        (
            limits.cancelled(interrupted=False, when="while checking the goal"),
            Stop(
                StopReason.STOPPED,
                "stopped on request (`outloop stop`) while checking the goal",
            ),
        ),
    ],
)
def test_stop_sentences(stop: Stop, expected: Stop) -> None:
    assert stop == expected
