"""run.json's bytes: the same content as ``to_dict`` gives ``json``, read back whole."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

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
    TestCase as Case,
)
from outloop_cli.store.records import (
    TestCounts as Counts,
)
from outloop_cli.store.runs import RunStore


def _record() -> RunRecord:
    judge = JudgeResult(
        preset="claude",
        met=False,
        criteria=[CriterionVerdict("prose", False, "kein Grund — «nein»", 1, 3, ["a", "b"])],
        errors=["vote 2: no verdict"],
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.125,
    )
    goal = GoalResult(
        met=False,
        exit_code=1,
        duration=0.5,
        summary="exit 1 after 0.5s; 1 of 2 tests failing",
        tests=Counts(total=2, passed=1, failed=1),
        failing=["t.test_b"],
        cases=[Case("t", "test_b", 0.25, "failed", "boom", "line\n\ttab \x1b[31m")],
        judge=judge,
    )
    iterations = [
        IterationRecord(n=0, started_at="2026-12-02T00:00:00Z", goal=goal),
        IterationRecord(
            n=1,
            started_at="2026-12-02T00:00:01Z",
            finished_at="2026-12-02T00:00:02Z",
            duration=1.0,
            agent=AgentResult(exit_code=0, duration=0.75, cost_usd=1e-7, input_tokens=3),
            commit="0" * 40,
            changed_files=["a b.txt", "ünï.txt"],
            skipped_files={"big.bin": 10_000_000},
            goal=goal,
            operator_notes=[{"id": 1, "who": "me", "at": "now", "text": "go on"}],
        ),
    ]
    return RunRecord(
        run_id="20261202-000000-abcdef",
        loop="l",
        state=RunState.FINISHED,
        started_at="2026-12-02T00:00:00Z",
        branch="outloop/l/x",
        base_commit="1" * 40,
        worktree="/tmp/w\nx",
        repo_root="/tmp/r",
        config_path=".outloop/l.yml",
        agent_label="command",
        goal_label="run: false",
        limits={"max_iterations": 3, "max_time": None},
        stop_reason=StopReason.MAX_ITERATIONS,
        iterations=iterations,
        sandbox={"requested": "auto", "active": True, "warning": None},
        approved=["push"],
        audit_head={"seq": 7, "sha256": "f" * 64},
    )


def test_the_bytes_hold_what_to_dict_gives_in_its_key_order() -> None:
    record = _record()
    encoded = record.to_json()
    assert encoded.endswith(b"}\n")
    assert json.loads(encoded) == json.loads(json.dumps(record.to_dict()))
    assert list(json.loads(encoded)) == list(record.to_dict())
    # indented as before, so a person reading run.json sees one key a line
    assert b'\n  "run_id": "20261202-000000-abcdef",\n' in encoded


def test_a_saved_record_loads_back_equal(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    record = _record()
    store.save(record)
    loaded = store.load(record.run_id)
    assert loaded == record
    assert loaded.cost_usd == record.cost_usd and loaded.tokens == record.tokens


def _from_scratch(record: RunRecord) -> bytes:
    """run.json's bytes with nothing kept from an earlier save: the whole record at once."""
    top = {**record.to_dict(), "state": record.state, "stop_reason": record.stop_reason}
    top["iterations"] = record.iterations
    return msgspec.json.format(msgspec.json.encode(top), indent=2) + b"\n"


def test_the_bytes_are_those_of_the_whole_record_encoded_at_once() -> None:
    record = _record()
    assert record.to_json() == _from_scratch(record)
    record.iterations = []
    assert record.to_json() == _from_scratch(record)
    # a value that looks like the iterations key, in a string and one level down
    record = _record()
    record.description = '\n  "iterations": [],\n'
    record.limits = {"iterations": [], "nested": {"iterations": []}}
    assert record.to_json() == _from_scratch(record)


def test_a_run_saved_after_every_step_writes_what_it_holds_at_that_moment() -> None:
    """The engine's pattern: append an iteration, change only the newest, save, repeat."""
    record = _record()
    record.iterations = [record.iterations[0]]
    template = _record().iterations[1]
    for n in range(1, 30):
        it = IterationRecord(n=n, started_at=f"t{n}")
        record.iterations.append(it)
        assert record.to_json() == _from_scratch(record)
        it.agent = template.agent
        it.changed_files.append(f"file {n}")
        assert record.to_json() == _from_scratch(record)
        it.goal, it.commit, it.finished_at = template.goal, f"{n:040d}", f"t{n}+1"
        it.operator_notes = [{"id": n, "text": "note"}]
        assert record.to_json() == _from_scratch(record)
    assert len(json.loads(record.to_json())["iterations"]) == 30


def test_a_replaced_or_edited_history_is_encoded_again() -> None:
    """Resume's reconcile drops, recovers and edits older iterations: it replaces the list."""
    record = _record()
    for n in range(2, 8):
        record.iterations.append(IterationRecord(n=n, started_at=f"t{n}", commit=f"{n:040d}"))
        record.to_json()
    kept = [it for it in record.iterations if it.n % 2 == 0]
    kept[1].commit = "c" * 40
    record.iterations = kept
    assert record.to_json() == _from_scratch(record)
    # the same objects in another order, and one put in the place of another
    record.iterations = list(reversed(record.iterations))
    assert record.to_json() == _from_scratch(record)
    record.iterations[0] = IterationRecord(n=99, started_at="new")
    assert record.to_json() == _from_scratch(record)
    record.iterations.insert(1, IterationRecord(n=98, started_at="inserted"))
    assert record.to_json() == _from_scratch(record)
    del record.iterations[2]
    assert record.to_json() == _from_scratch(record)
