"""The audit log under a flood (issue 12, part 4): coalesced, bounded, still a valid chain.

Synthetic floods here pin the rules down; ``tests/security/test_proxy_flood.py``
floods a real run's proxy and checks the same through ``outloop audit verify``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.store import audit
from outloop_cli.store.audit import AuditLimits, AuditLog, verify


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _refusal(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "workspace": "client-a",
        "via": "proxy",
        "name": "api",
        "method": "GET" if n % 2 else "POST",
        "path": f"/v2/probe/{n}",
        "reason": "route_not_allowed",
        "status": 403,
        **extra,
    }


def test_three_thousand_identical_refusals_become_a_threshold_and_one_count(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1")
    log.append("run_started", loop="fix")
    for n in range(3000):
        log.append("credential_denied", **_refusal(n))
    log.append("run_stopped", reason="goal_met")

    events = _events(log.path)
    kinds = [e["event"] for e in events]
    threshold = audit.DEFAULT_LIMITS.repeat_threshold
    assert kinds == (
        ["run_started"]
        + ["credential_denied"] * threshold
        + ["credential_denied_repeated", "run_stopped"]
    )
    summary = events[-2]
    assert summary["count"] == 3000 - threshold
    assert (summary["via"], summary["name"], summary["reason"]) == (
        "proxy",
        "api",
        "route_not_allowed",
    )
    # first and last time of what was counted, and the last path as an example
    assert summary["first"] <= summary["last"]
    assert summary["path"] == "/v2/probe/2999"
    assert verify(log.path, run_id="run-1").ok


def test_different_refusals_are_counted_apart(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1", AuditLimits(repeat_threshold=3))
    for n in range(10):
        log.append("credential_denied", **_refusal(n))
        log.append("credential_denied", **_refusal(n, reason="bad_path", status=400))
        log.append("credential_denied", **_refusal(n, name="crm", reason="capability_unknown"))
    log.flush()
    events = _events(log.path)
    assert [e["event"] for e in events].count("credential_denied") == 9
    counts = {e["reason"]: e["count"] for e in events if e["event"] == "credential_denied_repeated"}
    assert counts == {"route_not_allowed": 7, "bad_path": 7, "capability_unknown": 7}
    assert verify(log.path).ok


def test_names_the_agent_makes_up_do_not_defeat_the_count(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1", AuditLimits(repeat_threshold=1))
    for n in range(3000):
        log.append("credential_denied", **_refusal(n, name=f"made-up-{n}"))
    log.flush()
    # every made-up name is a kind of its own only up to a bound; the rest count together
    written = [e for e in _events(log.path) if e["event"] == "credential_denied"]
    assert len(written) <= audit._MAX_KINDS + 1
    assert len(log._seen) <= audit._MAX_KINDS + 1
    assert verify(log.path).ok


def test_a_growing_count_is_written_at_least_once_a_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(audit.time, "monotonic", lambda: clock[0])
    log = AuditLog(
        tmp_path / "audit.jsonl", "run-1", AuditLimits(repeat_threshold=2, repeat_window=60)
    )
    for n in range(5):
        log.append("credential_denied", **_refusal(n))
    assert [e["event"] for e in _events(log.path)] == ["credential_denied"] * 2
    clock[0] += 61
    log.append("credential_denied", **_refusal(5))
    summary = _events(log.path)[-1]
    assert summary["event"] == "credential_denied_repeated"
    # the three counted before the window closed, and the one that closed it
    assert summary["count"] == 4


def test_the_log_is_bounded_and_its_end_says_it_was_truncated(tmp_path: Path) -> None:
    limits = AuditLimits(repeat_threshold=10, max_bytes=20_000)
    log = AuditLog(tmp_path / "audit.jsonl", "run-1", limits)
    log.append("run_started", loop="fix")
    for n in range(3000):
        log.append("proxy_request", name="api", method="GET", path=f"/v1/x/{n}", status=200)
    log.append("committed", iteration=1, commit="a" * 40)
    log.append("run_stopped", reason="goal_met")

    events = _events(log.path)
    size = log.path.stat().st_size
    assert size < 20_000 + 2_000
    kinds = [e["event"] for e in events]
    first_note = kinds.index("audit_truncated")
    assert events[first_note]["from_seq"] == first_note + 1
    assert set(kinds[first_note + 1 : -3]) == set()
    # before the run's next own event: how many were left out, and when
    final = events[-3]
    assert final["event"] == "audit_truncated"
    assert final["dropped"] == 3000 - (first_note - 1)
    assert final["kinds"] == {"proxy_request": final["dropped"]}
    assert kinds[-2:] == ["committed", "run_stopped"]
    assert verify(log.path, run_id="run-1").ok


def test_the_bound_on_events_holds_across_writers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    limits = AuditLimits(repeat_threshold=10, max_events=50)
    for _ in range(3):
        # each writer (the runner, a resumed session) sees the log's size on disk
        log = AuditLog(path, "run-1", limits)
        for n in range(100):
            log.append("credential_granted", via="git", name=f"n{n}")
        log.append("run_stopped", reason="stopped")
    events = _events(path)
    assert sum(e["event"] == "credential_granted" for e in events) == 50
    assert [e["event"] for e in events].count("audit_truncated") == 6
    assert [e["event"] for e in events].count("run_stopped") == 3
    assert verify(path).ok


def test_the_runs_own_events_are_never_dropped(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1", AuditLimits(max_events=5))
    for n in range(20):
        log.append("proxy_request", name="api", status=200)
        log.append("iteration_started", iteration=n)
    kinds = [e["event"] for e in _events(log.path)]
    assert kinds.count("iteration_started") == 20
    assert verify(log.path).ok


def test_egress_connections_the_agent_opens_are_bounded_too(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1", AuditLimits(max_events=20))
    log.append("run_started", loop="fix")
    for port in range(1, 500):
        log.append("egress", host="127.0.0.2", port=port, decision="refused", reason="unlisted")
    log.append("run_stopped", reason="max_iterations")
    events = [
        json.loads(line)["event"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()
    ]
    assert len(events) < 30 and events.count("egress") < 20
    assert "audit_truncated" in events and events[-1] == "run_stopped"
