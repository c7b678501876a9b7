"""What ``outloop status`` reads of a run: its record, without every iteration's details.

A listing shows a run's facts, the iteration it reached, its last goal result
and its cost. run.json holds every iteration in full (agent reports, test
cases, judge verdicts), and building all of that for each of a hundred runs
was most of what ``status`` spent reading them. The listing keeps only the
iterations a summary looks at (the last one that has a goal result, and the
highest-numbered one) and adds up the cost from every iteration's plain JSON,
as ``RunRecord.cost_usd`` does from the built record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from outloop_cli.store.records import RunRecord
from outloop_cli.store.runs import RunStore


@dataclass(frozen=True)
class Listing:
    """The part of a run's record that a listing shows, read without building every iteration."""

    # iterations: only the last one with a goal result and the highest-numbered one
    record: RunRecord
    # what RunRecord.cost_usd gives for the whole record
    cost_usd: float | None


def load_listing(store: RunStore, run_id: str) -> Listing:
    """The run's listing; raises what ``RunStore.load`` raises for a damaged record.

    (A damaged iteration the listing does not build goes unnoticed here;
    ``outloop show`` reads the whole record.)
    """
    return listing_of(store, run_id, store.read(run_id))


def listing_of(store: RunStore, run_id: str, data: Any) -> Listing:
    """The listing of ``data``, run.json as ``RunStore.read`` gave it."""
    iterations = data.get("iterations") if isinstance(data, dict) else None
    cost = _cost(iterations) if isinstance(iterations, list) else _UNKNOWN
    if cost is _UNKNOWN or not isinstance(iterations, list):
        # not a record as the runner writes it: the record's own reading judges all of it
        record = store.record_from(run_id, data)
        return Listing(record, record.cost_usd)
    kept = _summary_iterations(iterations)
    record = store.record_from(run_id, {**data, "iterations": kept})
    # the very number the record would give (an int when every cost is one)
    return Listing(record, cast("float | None", cost))


_UNKNOWN = object()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cost(iterations: list[Any]) -> Any:
    """``RunRecord.cost_usd`` (each agent turn's cost, and each judge's) from plain JSON."""
    # summed in the record's order (every agent turn, then every judge), to the same float
    costs: list[float] = []
    judges: list[float] = []
    for item in iterations:
        if not isinstance(item, dict):
            return _UNKNOWN
        agent = item.get("agent")
        goal = item.get("goal")
        if agent is not None:
            if not isinstance(agent, dict):
                return _UNKNOWN
            value = agent.get("cost_usd")
            if value is not None:
                if not _number(value):
                    return _UNKNOWN
                costs.append(value)
        judge = goal.get("judge") if isinstance(goal, dict) else None
        if judge is not None:
            if not isinstance(judge, dict):
                return _UNKNOWN
            value = judge.get("cost_usd")
            if value is not None:
                if not _number(value):
                    return _UNKNOWN
                judges.append(value)
    costs += judges
    return sum(costs) if costs else None


def _summary_iterations(iterations: list[Any]) -> list[Any]:
    indexes: set[int] = set()
    for index in range(len(iterations) - 1, -1, -1):
        item = iterations[index]
        if isinstance(item, dict) and item.get("goal") is not None:
            indexes.add(index)
            break
    numbered = [
        (item["n"], index)
        for index, item in enumerate(iterations)
        if isinstance(item, dict) and isinstance(item.get("n"), int)
    ]
    if numbered:
        indexes.add(max(numbered)[1])
    if len(numbered) != len(iterations):
        # something odd in the list: let the record's own reading judge all of it
        return iterations
    return [iterations[index] for index in sorted(indexes)]
