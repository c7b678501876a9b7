"""Iteration commit messages, byte for byte, and the identity they are authored under.

Resume and ``outloop audit verify`` read these trailers back from the branch,
so any change to the text is a change to the protocol: the expected messages
below are the ones outloop has always written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from outloop_cli.engine.commit import agent_identity, commit_message
from outloop_cli.git import trailers
from outloop_cli.git.worktree import Identity, Snapshot
from outloop_cli.store.records import AgentResult, GoalResult
from tests.conftest import RepoFactory, git

RUN = "20260101-000000-abcdef"
CHANGED = Snapshot("tree", "parent", ("a.py", "b.py"), {"big.bin": 99999})
NOTHING = Snapshot("tree", "parent", ())


def failing_goal() -> GoalResult:
    return GoalResult(
        met=False,
        exit_code=1,
        duration=2.0,
        summary="exit 1 after 2.0s; 7 of 9 tests failing",
        failing=[f"t{i}" for i in range(7)],
    )


def message(**given: object) -> str:
    fields: dict[str, object] = {
        "loop": "fix",
        "run_id": RUN,
        "iteration": 3,
        "agent_label": "claude\nx",
        "goal_label": "pytest -q",
    }
    fields.update(given)
    return commit_message(**fields)  # type: ignore[arg-type]


def test_goal_not_met_with_cost_tokens_skipped_files_and_the_audit_head() -> None:
    text = message(
        goal=failing_goal(),
        agent=AgentResult(
            exit_code=0, duration=12.5, cost_usd=0.01234, input_tokens=100, output_tokens=23
        ),
        snapshot=CHANGED,
        audit_head={"seq": 7, "hash": "ab" * 32},
    )
    assert text == (
        "outloop(fix): iteration 3 — goal not met\n"
        "\n"
        "Goal: pytest -q — exit 1 after 2.0s; 7 of 9 tests failing\n"
        "Failing: t0, t1, t2, t3, t4 (+2 more)\n"
        "Agent: exit 0 after 12.5s, ok, $0.0123\n"
        "Changed: 2 file(s)\n"
        "Not committed (too large, 99999 bytes): big.bin\n"
        "\n"
        f"Outloop-Run: {RUN}\n"
        "Outloop-Loop: fix\n"
        "Outloop-Iteration: 3\n"
        "Outloop-Goal: fail\n"
        "Outloop-Agent: claude x\n"
        "Outloop-Cost-USD: 0.0123\n"
        "Outloop-Tokens: 123\n"
        f"Outloop-Audit-Head: 7:{'ab' * 32}\n"
    )


def test_goal_met_after_a_failed_agent_that_changed_nothing() -> None:
    text = message(
        goal=GoalResult(met=True, exit_code=0, duration=1.0, summary="exit 0 after 1.0s"),
        agent=AgentResult(exit_code=2, duration=3.0, error="exit"),
        snapshot=NOTHING,
    )
    assert text == (
        "outloop(fix): iteration 3 — goal met\n"
        "\n"
        "Goal: pytest -q — exit 0 after 1.0s\n"
        "Agent: exit 2 after 3.0s, failed (exit)\n"
        "Changed: nothing\n"
        "\n"
        f"Outloop-Run: {RUN}\n"
        "Outloop-Loop: fix\n"
        "Outloop-Iteration: 3\n"
        "Outloop-Goal: pass\n"
        "Outloop-Agent: claude x\n"
    )


def test_a_turn_the_run_stopped_before_its_goal() -> None:
    text = message(goal=None, agent=None, snapshot=NOTHING)
    assert text == (
        "outloop(fix): iteration 3 — goal not evaluated\n"
        "\n"
        "Goal: pytest -q — not evaluated (the run stopped first)\n"
        "Changed: nothing\n"
        "\n"
        f"Outloop-Run: {RUN}\n"
        "Outloop-Loop: fix\n"
        "Outloop-Iteration: 3\n"
        "Outloop-Goal: none\n"
        "Outloop-Agent: claude x\n"
    )


def test_a_commit_pushed_for_ci_has_no_verdict_of_its_own() -> None:
    text = message(
        goal=None,
        agent=AgentResult(exit_code=0, duration=12.5, cost_usd=0.01234, input_tokens=123),
        snapshot=CHANGED,
        awaiting_ci=True,
        audit_head={"seq": 1, "hash": "cd"},
    )
    assert text == (
        "outloop(fix): iteration 3 — pushed for CI\n"
        "\n"
        "Goal: pytest -q — checked by CI on this commit\n"
        "Agent: exit 0 after 12.5s, ok, $0.0123\n"
        "Changed: 2 file(s)\n"
        "Not committed (too large, 99999 bytes): big.bin\n"
        "\n"
        f"Outloop-Run: {RUN}\n"
        "Outloop-Loop: fix\n"
        "Outloop-Iteration: 3\n"
        "Outloop-Goal: pending\n"
        "Outloop-Agent: claude x\n"
        "Outloop-Cost-USD: 0.0123\n"
        "Outloop-Tokens: 123\n"
        "Outloop-Audit-Head: 1:cd\n"
    )


def test_the_trailers_read_back_from_a_real_commit(make_repo: RepoFactory) -> None:
    repo = make_repo({"a.py": "x = 1\n"})
    text = message(goal=failing_goal(), agent=None, snapshot=CHANGED)
    (repo / "a.py").write_text("x = 2\n")
    git(repo, "commit", "-qam", text)
    [found] = trailers.read(
        Path(repo),
        ["HEAD^..HEAD"],
        [trailers.RUN, trailers.ITERATION, trailers.GOAL, trailers.AGENT],
    )
    assert found.only(trailers.RUN) == RUN
    assert found.only(trailers.ITERATION) == "3"
    assert found.only(trailers.GOAL) == trailers.GOAL_FAIL
    assert found.only(trailers.AGENT) == "claude x"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("claude", Identity("claude via outloop", "claude@outloop.invalid")),
        (
            "command: ./fix.sh",
            Identity("command: ./fix.sh via outloop", "command--.-fix.sh@outloop.invalid"),
        ),
        ("Aider (gpt-4o)", Identity("Aider (gpt-4o) via outloop", "aider--gpt-4o@outloop.invalid")),
        ("...", Identity("... via outloop", "agent@outloop.invalid")),
    ],
)
def test_commits_are_authored_by_the_agent_at_an_address_that_receives_no_mail(
    label: str, expected: Identity
) -> None:
    assert agent_identity(label) == expected
