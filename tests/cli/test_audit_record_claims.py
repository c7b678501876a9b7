"""run.json's claims against an intact log's key events (``commands/audit.py: _contradiction``).

A long run's log holds hundreds of thousands of key events; these pin down
which of them each claim is held to: the latest session's stop, the last
verdict and commit logged for an iteration.
"""

from __future__ import annotations

from typing import Any

import pytest

from outloop_cli.commands.audit import _contradiction
from outloop_cli.store.chain_scan import KeyEvent


def _log(*kinds: tuple[str, dict[str, Any]]) -> list[KeyEvent]:
    return [
        KeyEvent(seq=n, time="t", run="r1", event=kind, prev="p", **fields)
        for n, (kind, fields) in enumerate(kinds, start=1)
    ]


START = ("run_started", {})
RESUME = ("run_resumed", {})


def _stop(reason: str) -> tuple[str, dict[str, Any]]:
    return ("run_stopped", {"reason": reason})


def _goal(n: object, met: bool) -> tuple[str, dict[str, Any]]:
    return ("goal_evaluated", {"iteration": n, "met": met})


def _commit(n: object, sha: str) -> tuple[str, dict[str, Any]]:
    return ("committed", {"iteration": n, "commit": sha})


FINISHED = {"state": "finished", "stop_reason": "goal_met"}


@pytest.mark.parametrize(
    ("events", "record", "expected"),
    [
        ([START, _stop("goal_met")], FINISHED, None),
        ([START, _goal(1, True)], {"state": "running"}, None),
        # a stop of an earlier session does not close the latest one
        ([START, _stop("goal_met"), RESUME, _goal(1, True)], FINISHED, (11, "no `run_stopped`")),
        ([START, _stop("goal_met"), START], FINISHED, (11, "no `run_stopped`")),
        # a log with no start at all: every stop counts, the last one says why
        ([_stop("max_iterations"), _stop("goal_met")], FINISHED, None),
        ([_stop("goal_met"), _stop("max_iterations")], FINISHED, (2, "says `max_iterations`")),
        # the latest session's stop is the one held to the record
        (
            [START, _stop("goal_met"), RESUME, _stop("stall")],
            FINISHED,
            (4, "stopped with `goal_met`, but the audit log (line 4) says `stall`"),
        ),
        ([START, _stop("stall"), RESUME, _stop("goal_met")], FINISHED, None),
        ([START, _stop("goal_met")], {"state": "finished"}, None),
    ],
)
def test_the_stop_a_finished_record_claims_is_the_latest_sessions(
    events: list[tuple[str, dict[str, Any]]],
    record: dict[str, Any],
    expected: tuple[int, str] | None,
) -> None:
    found = _contradiction(record, _log(*events), lines=10)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == expected[0] and expected[1] in found[1]


def test_each_iterations_verdict_and_commit_are_the_last_logged_for_it() -> None:
    events = _log(
        START,
        _goal(1, False),
        _commit(1, "a" * 40),
        # a resumed run logs iteration 1 again: the last word counts
        RESUME,
        _goal(1, True),
        _commit(1, "b" * 40),
        _goal(None, False),  # not an iteration number: never matched to one
        _stop("goal_met"),
    )
    iteration = {"n": 1, "goal": {"met": True}, "commit": "b" * 40}
    assert _contradiction({**FINISHED, "iterations": [iteration]}, events, 8) is None
    found = _contradiction(
        {**FINISHED, "iterations": [{**iteration, "goal": {"met": False}}]}, events, 8
    )
    assert found is not None and found[0] == 5 and "goal was not met" in found[1]
    found = _contradiction(
        {**FINISHED, "iterations": [{**iteration, "commit": "a" * 40}]}, events, 8
    )
    assert found is not None and found[0] == 6 and "is commit aaaaaaaaaa" in found[1]
    # claims the log has no event for, and entries that are not iterations, are passed over
    odd = [{"n": 2, "goal": {"met": False}}, "junk", {"n": "1", "commit": "c" * 40}]
    assert _contradiction({**FINISHED, "iterations": odd}, events, 8) is None
