"""The goal-kind registry: one verifier per `goal:` key, the kinds the loop schema accepts."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from outloop_cli.config.loader import check_loop_text
from outloop_cli.config.loop_schema import json_schema
from outloop_cli.config.model import CIGoalConfig, GoalConfig, JudgeConfig
from outloop_cli.errors import CouldNotRun
from outloop_cli.goals.base import GoalContext, Verifier
from outloop_cli.goals.ci.verifier import CIVerifier
from outloop_cli.goals.command import CommandVerifier
from outloop_cli.goals.judge.verifier import JudgeOnlyVerifier
from outloop_cli.goals.registry import (
    KINDS,
    GoalKind,
    companion_names,
    kind_names,
    kind_of,
    make_verifier,
)
from outloop_cli.store.records import GoalResult

# A goal of each kind; a new kind needs its example here (the first test says so).
EXAMPLES = {
    "run": (GoalConfig(run="pytest -q"), CommandVerifier),
    "ci": (GoalConfig(ci=CIGoalConfig(repo="octo/widgets")), CIVerifier),
    "judge": (GoalConfig(judge=JudgeConfig(preset="claude", spec="SPEC.md")), JudgeOnlyVerifier),
}
AGENT = "agent:\n  preset: command\n  command: [my-agent]\n"


class AlwaysMet:
    """A verifier as a new kind would bring one: the contract and nothing else."""

    label = "always met"
    produced_paths: tuple[str, ...] = ()

    def evaluate(self, ctx: GoalContext) -> GoalResult:
        raise NotImplementedError


def always_met(goal: GoalConfig) -> Verifier:
    return AlwaysMet()


def goal_kinds_in_schema() -> list[str]:
    """The keys of `goal:` the JSON Schema asks for at least one of."""
    rules = json_schema()["properties"]["goal"]["allOf"]
    (any_of,) = [rule["anyOf"] for rule in rules if "anyOf" in rule]
    return [key for alternative in any_of for key in alternative["required"]]


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(kind_names())


@pytest.mark.parametrize("kind", kind_names())
def test_every_registered_kind_builds_its_verifier(kind: str) -> None:
    goal, verifier_class = EXAMPLES[kind]
    assert kind_of(goal) == kind
    verifier = make_verifier(goal)
    assert isinstance(verifier, verifier_class)
    assert verifier.label


def test_the_schema_takes_exactly_the_registered_kinds() -> None:
    assert goal_kinds_in_schema() == list(kind_names()) == ["run", "ci", "judge"]
    assert companion_names() == ("judge",)
    goal_fields = {f.name for f in dataclasses.fields(GoalConfig)}
    goal_keys = set(json_schema()["properties"]["goal"]["properties"])
    for kind in kind_names():
        # a kind is named for its key in `goal:`, which is the GoalConfig field it reads
        assert kind in goal_fields
        assert kind in goal_keys


def test_a_goal_of_no_kind_cannot_run() -> None:
    assert kind_of(GoalConfig()) is None
    with pytest.raises(CouldNotRun) as caught:
        make_verifier(GoalConfig())
    assert str(caught.value) == "the goal has none of `run`, `ci`, `judge`"
    assert caught.value.hint == "set `goal.run`, `goal.ci` or `goal.judge`"
    _, problems = check_loop_text(AGENT + "goal: {}\n", file="x.yml", name="x")
    assert [p.message for p in problems] == ["goal: needs one of `run`, `ci` or `judge`"]


JUDGE = "judge: {preset: claude, spec: SPEC.md}"


@pytest.mark.parametrize(
    ("goal", "problems"),
    [
        ("{run: pytest, " + JUDGE + "}", []),
        ("{ci: {provider: github}, " + JUDGE + "}", []),
        ("{" + JUDGE + "}", []),
        (
            "{run: pytest, ci: {provider: github}, " + JUDGE + "}",
            ["goal: `run` and `ci` exclude each other"],
        ),
    ],
)
def test_the_judge_stands_beside_another_kind_or_alone(goal: str, problems: list[str]) -> None:
    text = AGENT + f"goal: {goal}\n"
    _, found = check_loop_text(text, file="x.yml", name="x")
    assert [p.message for p in found] == problems
    data = {"agent": {"preset": "command", "command": ["my-agent"]}, "goal": yaml.safe_load(goal)}
    valid = jsonschema.Draft202012Validator(json_schema()).is_valid(data)
    assert valid is (not problems)


def test_a_registered_kind_is_one_the_schema_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema reads the registry when used: a kind added later is one of the choices."""
    monkeypatch.setitem(KINDS, "review", GoalKind("review", always_met))
    assert goal_kinds_in_schema() == ["run", "ci", "judge", "review"]
    jsonschema.Draft202012Validator.check_schema(json_schema())
    _, problems = check_loop_text(AGENT + "goal: {}\n", file="x.yml", name="x")
    assert [p.message for p in problems] == ["goal: needs one of `run`, `ci`, `judge` or `review`"]
    with pytest.raises(CouldNotRun) as caught:
        make_verifier(GoalConfig())
    assert str(caught.value) == "the goal has none of `run`, `ci`, `judge`, `review`"
    assert caught.value.hint == "set `goal.run`, `goal.ci`, `goal.judge` or `goal.review`"


def test_validating_a_loop_imports_no_verifier() -> None:
    code = (
        "import json, sys\n"
        "from outloop_cli.config.loader import load_loop_text\n"
        f"load_loop_text({AGENT + 'goal: {run: pytest -q}' + chr(10)!r}, file='x.yml', name='x')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('outloop_cli.goals'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == ["outloop_cli.goals", "outloop_cli.goals.registry"]
