"""A run's listing (what `outloop status` reads) summarises exactly as its full record does."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

import pytest

from outloop_cli.commands.status import summarize
from outloop_cli.errors import OutloopError
from outloop_cli.store.records import (
    AgentResult,
    CriterionVerdict,
    GoalResult,
    IterationRecord,
    JudgeResult,
    RunRecord,
    RunState,
    StopReason,
)
from outloop_cli.store.records import (
    TestCounts as Counts,
)
from outloop_cli.store.run_listing import load_listing
from outloop_cli.store.runs import RunStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def _iteration(n: int, *, goal: GoalResult | None, cost: float | None) -> IterationRecord:
    agent = None if n == 0 else AgentResult(exit_code=0, duration=1.0, cost_usd=cost)
    return IterationRecord(n=n, started_at="2026-12-02T11:00:00+00:00", agent=agent, goal=goal)


def _goal(met: bool, failing: int, judge_cost: float | None = None) -> GoalResult:
    judge = None
    if judge_cost is not None:
        judge = JudgeResult(
            preset="p",
            met=met,
            criteria=[CriterionVerdict(criterion="c", met=met, reason="r")],
            cost_usd=judge_cost,
        )
    return GoalResult(
        met=met,
        exit_code=0 if met else 1,
        duration=0.5,
        summary=f"{failing} failing",
        tests=Counts(total=5, passed=5 - failing, failed=failing),
        judge=judge,
    )


def _record(run_id: str, iterations: list[IterationRecord], **extra: object) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        loop="fix",
        state=RunState.FINISHED,
        started_at="2026-12-02T11:00:00+00:00",
        branch=f"outloop/fix/{run_id}",
        base_commit="0" * 40,
        worktree="/nonexistent",
        repo_root="/nonexistent",
        config_path=".outloop/fix.yml",
        agent_label="command",
        goal_label="true",
        limits={"max_iterations": 9},
        stop_reason=StopReason.GOAL_MET,
        duration=12.0,
        host=socket.gethostname(),
        iterations=iterations,
        **extra,  # type: ignore[arg-type]
    )


RECORDS = {
    "none": [],
    "baseline only": [_iteration(0, goal=_goal(False, 3), cost=None)],
    "several": [
        _iteration(0, goal=_goal(False, 3), cost=None),
        _iteration(1, goal=_goal(False, 2, judge_cost=0.01), cost=0.5),
        _iteration(2, goal=None, cost=0.25),
        _iteration(3, goal=_goal(True, 0, judge_cost=0.02), cost=None),
        _iteration(4, goal=None, cost=1.0),
    ],
    "no costs": [_iteration(0, goal=None, cost=None), _iteration(1, goal=None, cost=None)],
}


@pytest.mark.parametrize("name", list(RECORDS))
def test_the_listing_summarises_as_the_whole_record(tmp_path: Path, name: str) -> None:
    store = RunStore(tmp_path / "git")
    record = _record("r-1", RECORDS[name])
    store.create(record.run_id)
    store.save(record)
    paths = store.paths(record.run_id)

    listing = load_listing(store, record.run_id)

    full = summarize(store.load(record.run_id), paths, now=NOW)
    assert summarize(listing.record, paths, now=NOW, cost_usd=listing.cost_usd) == full
    assert listing.cost_usd == record.cost_usd
    assert len(listing.record.iterations) <= 2


def test_the_cost_comes_from_the_iterations_not_the_saved_total(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "git")
    record = _record("r-1", RECORDS["several"])
    store.create(record.run_id)
    data = record.to_dict()
    data["cost_usd"] = 99.0
    data["iterations"][4]["agent"]["cost_usd"] = 2.0
    store.paths(record.run_id).run_json.write_text(json.dumps(data))

    listing = load_listing(store, record.run_id)

    assert listing.cost_usd == store.load(record.run_id).cost_usd
    assert listing.cost_usd == pytest.approx(0.5 + 0.25 + 2.0 + 0.01 + 0.02)


def test_an_odd_iteration_list_is_judged_by_the_records_own_reading(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "git")
    record = _record("r-1", RECORDS["several"])
    store.create(record.run_id)
    data = record.to_dict()
    data["iterations"][1]["agent"] = "an agent"
    store.paths(record.run_id).run_json.write_text(json.dumps(data))

    with pytest.raises(Exception) as loaded:
        store.load(record.run_id)
    with pytest.raises(loaded.type) as listed:
        load_listing(store, record.run_id)
    assert str(listed.value) == str(loaded.value)


@pytest.mark.parametrize("text", ["[]", "{}", '{"iterations": 3}', "not json"])
def test_a_damaged_record_fails_as_loading_it_does(tmp_path: Path, text: str) -> None:
    store = RunStore(tmp_path / "git")
    store.create("r-1")
    store.paths("r-1").run_json.write_text(text)
    with pytest.raises(OutloopError) as loaded:
        store.load("r-1")
    with pytest.raises(OutloopError) as listed:
        load_listing(store, "r-1")
    assert listed.value.message == loaded.value.message
