"""Approval gates on real runs: the runner waits, a second process approves or denies."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    agent_cmd,
    branch_log,
    counter_goal,
    loop_yaml,
    only_run,
    run_cli,
    runs_dir,
    start_runner,
)


def wait_until(
    check: Callable[[], Any],
    what: str,
    timeout: float = 60,
    runner: subprocess.Popen[str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if runner is not None and runner.poll() is not None:
            _, err = runner.communicate()
            raise AssertionError(f"the runner exited {runner.returncode} before {what}:\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def record_of(repo: Path) -> dict[str, Any]:
    runs = sorted(runs_dir(repo).glob("*/run.json")) if runs_dir(repo).is_dir() else []
    if not runs:
        return {}
    try:
        return dict(json.loads(runs[0].read_text()))
    except ValueError:
        return {}


def waiting(repo: Path, gate: str, runner: subprocess.Popen[str]) -> dict[str, Any]:
    """The run's record once it waits at ``gate``."""

    def check() -> dict[str, Any] | None:
        record = record_of(repo)
        approval = record.get("approval") or {}
        if record.get("state") == "waiting_approval" and approval.get("gate") == gate:
            return record
        return None

    return dict(wait_until(check, f"the {gate} gate", runner=runner))


def audit_events(repo: Path) -> list[dict[str, Any]]:
    record = only_run(repo)
    path = runs_dir(repo) / str(record["run_id"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def finish(runner: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = runner.communicate(timeout=120)
    return runner.returncode, err


def test_every_n_iterations_waits_with_nothing_running_until_approved_then_denied(
    make_repo: RepoFactory,
) -> None:
    loop = loop_yaml(
        agent_cmd("counter_agent.py", "{prompt_file}"),
        counter_goal(5),
        approve={"every_iterations": 1},
    )
    repo = make_repo({".outloop/fix.yml": loop})
    runner = start_runner(repo)

    record = waiting(repo, "iterations", runner)
    run_id = record["run_id"]
    request = record["approval"]
    assert request["iteration"] == 2 and request["since"] and request["timeout_at"]
    assert "1 iteration" in request["what"]
    # nothing of the agent runs while waiting: one turn happened, the second has not begun
    started = named(audit_events(repo), "iteration_started")
    assert [e["iteration"] for e in started] == [1]
    status = json.loads(run_cli(repo, "status", "--json", check=True).stdout)
    assert status["state"] == "waiting_approval"
    assert status["approval"]["id"] == request["id"]
    table = run_cli(repo, "status", check=True).stdout
    assert "waiting_approval" in table and "approve iterations?" in table
    shown = run_cli(repo, "show", run_id, check=True).stdout
    assert "waiting for approval to continue after 1 iteration" in shown
    assert request["id"] in shown

    approved = run_cli(repo, "approve", run_id[-6:], "--note", "looks fine", "--as", "alice")
    assert approved.returncode == 0, approved.stderr
    assert "alice approved" in approved.stderr

    second = waiting(repo, "iterations", runner)
    assert second["approval"]["id"] != request["id"]
    assert second["approval"]["iteration"] == 3
    denied = run_cli(repo, "deny", run_id, "--reason", "enough for today")
    assert denied.returncode == 0, denied.stderr

    code, err = finish(runner)
    assert code == 1, err
    final = only_run(repo)
    assert final["state"] == "finished"
    assert final["stop_reason"] == "approval_denied"
    assert "enough for today" in final["stop_detail"]
    assert final["approval"] is None
    assert [it["n"] for it in final["iterations"]] == [0, 1, 2]
    events = audit_events(repo)
    requested = named(events, "approval_requested")
    assert [e["gate"] for e in requested] == ["iterations", "iterations"]
    granted = named(events, "approval_granted")
    assert len(granted) == 1
    assert granted[0]["who"] == "alice" and granted[0]["note"] == "looks fine"
    assert granted[0]["request"] == request["id"] and granted[0]["decided_at"]
    refusal = named(events, "approval_denied")
    assert len(refusal) == 1 and refusal[0]["reason"] == "enough for today"
    assert refusal[0]["who"]  # the OS user
    assert run_cli(repo, "audit", "verify", run_id).returncode == 0
    # a decision for a run that no longer waits is a usage error
    late = run_cli(repo, "approve", run_id)
    assert late.returncode == 2 and "not waiting" in late.stderr


def test_the_wait_does_not_count_against_the_time_limit(make_repo: RepoFactory) -> None:
    loop = loop_yaml(
        agent_cmd("counter_agent.py"),
        counter_goal(2),
        approve={"every_iterations": 1},
        limits__max_time="8s",
    )
    repo = make_repo({".outloop/fix.yml": loop})
    runner = start_runner(repo)
    record = waiting(repo, "iterations", runner)
    held_since = time.monotonic()
    # the run waits longer than its whole time limit
    wait_until(lambda: time.monotonic() - held_since > 9, "the wait to outlast max_time")
    assert record_of(repo)["state"] == "waiting_approval"

    assert run_cli(repo, "approve", record["run_id"]).returncode == 0
    code, err = finish(runner)

    assert code == 0, err
    final = only_run(repo)
    assert final["stop_reason"] == "goal_met"
    assert final["duration"] < 8


def test_no_decision_within_the_timeout_ends_the_run_as_approval_timeout(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    loop = loop_yaml(
        agent_cmd("counter_agent.py"),
        counter_goal(3),
        push=True,
        approve={"push": True, "timeout": "1s"},
    )
    repo = make_repo({".outloop/fix.yml": loop})
    git(repo, "remote", "add", "origin", str(remote))

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "approval_timeout"
    assert "push the run's branch" in record["stop_detail"]
    # nothing was pushed, and the turn that was waiting to be pushed is committed locally
    assert git(remote, "for-each-ref").strip() == ""
    assert len(branch_log(repo, record["branch"], record["base_commit"])) == 1
    events = audit_events(repo)
    assert [e["gate"] for e in named(events, "approval_requested")] == ["push"]
    assert len(named(events, "approval_timed_out")) == 1
    assert named(events, "pushed") == []


def test_an_approved_push_happens_once_approved_and_is_not_asked_again(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    loop = loop_yaml(
        agent_cmd("counter_agent.py"), counter_goal(2), push=True, approve={"push": True}
    )
    repo = make_repo({".outloop/fix.yml": loop})
    git(repo, "remote", "add", "origin", str(remote))
    runner = start_runner(repo)

    record = waiting(repo, "push", runner)
    assert git(remote, "for-each-ref").strip() == ""
    assert run_cli(repo, "approve", record["run_id"], "--as", "release-manager").returncode == 0
    code, err = finish(runner)

    assert code == 0, err
    final = only_run(repo)
    assert final["approved"] == ["push"]
    pushed = git(remote, "rev-parse", f"refs/heads/{final['branch']}").strip()
    assert pushed == git(repo, "rev-parse", final["branch"]).strip()
    events = audit_events(repo)
    assert len(named(events, "approval_requested")) == 1
    assert len(named(events, "pushed")) == 2
    # the approval came before the first push in the chain
    order = [e["event"] for e in events]
    assert order.index("approval_granted") < order.index("pushed")


def test_a_stale_or_misdirected_decision_approves_nothing(make_repo: RepoFactory) -> None:
    from outloop_cli.store import control
    from outloop_cli.store.runs import RunPaths

    loop = loop_yaml(
        agent_cmd("counter_agent.py"), counter_goal(2), approve={"every_iterations": 1}
    )
    repo = make_repo({".outloop/fix.yml": loop})
    runner = start_runner(repo)
    record = waiting(repo, "iterations", runner)
    run_id, current = record["run_id"], record["approval"]["id"]
    paths = RunPaths(runs_dir(repo) / run_id)

    wrong = run_cli(repo, "approve", run_id, "--request", "apr-000000000000")
    # an approval written for another request (one that timed out, say) lands in the run dir
    control.write_decision(
        paths, control.Decision("apr-0123456789ab", control.APPROVE, "mallory", "2026-01-01", None)
    )
    wait_until(
        lambda: named(audit_events(repo), "approval_decision_ignored"), "the stale decision ignored"
    )

    assert wrong.returncode == 2 and "not waiting for request" in wrong.stderr
    still = record_of(repo)
    assert still["state"] == "waiting_approval" and still["approval"]["id"] == current
    assert not (paths.approvals / "apr-0123456789ab.json").exists()
    ignored = named(audit_events(repo), "approval_decision_ignored")
    assert ignored[0]["who"] == "mallory" and ignored[0]["pending"] == current
    assert named(audit_events(repo), "approval_granted") == []

    assert run_cli(repo, "approve", run_id, "--request", current).returncode == 0
    code, err = finish(runner)
    assert code == 0, err
    assert only_run(repo)["stop_reason"] == "goal_met"


def test_stop_while_waiting_stops_and_resume_asks_again(make_repo: RepoFactory) -> None:
    loop = loop_yaml(
        agent_cmd("counter_agent.py"), counter_goal(2), approve={"every_iterations": 1}
    )
    repo = make_repo({".outloop/fix.yml": loop})
    runner = start_runner(repo)
    record = waiting(repo, "iterations", runner)
    run_id = record["run_id"]

    stopped = run_cli(repo, "stop", run_id)
    assert stopped.returncode == 0, stopped.stderr
    code, _ = finish(runner)
    assert code == 1
    assert only_run(repo)["stop_reason"] == "stopped"

    resumed = start_runner(repo, "resume", run_id)
    again = waiting(repo, "iterations", resumed)
    assert again["approval"]["id"] != record["approval"]["id"]
    assert run_cli(repo, "approve", run_id).returncode == 0
    code, err = finish(resumed)
    assert code == 0, err
    final = only_run(repo)
    assert final["stop_reason"] == "goal_met"
    assert "iterations:1" in final["approved"]


@pytest.mark.parametrize(
    ("approve", "problem", "hint"),
    [
        ({"credentials": ["crn"]}, "`crn` is not a credential of this loop", "did you mean `crm`?"),
        (
            {"every_iteration": 3},
            "unknown key `every_iteration`",
            "did you mean `every_iterations`?",
        ),
        ({"timeout": "soon"}, "approve.timeout", None),
    ],
)
def test_bad_approve_config_is_a_located_error(
    make_repo: RepoFactory, approve: dict[str, Any], problem: str, hint: str | None
) -> None:
    loop = loop_yaml(
        agent_cmd("counter_agent.py"),
        counter_goal(2),
        credentials={"crm": {"via": "proxy", "upstream": "https://crm.example", "env": "CRM_URL"}},
        approve=approve,
    )
    repo = make_repo({".outloop/fix.yml": loop})

    done = run_cli(repo, "validate", "fix")

    assert done.returncode == 2
    assert ".outloop/fix.yml:" in done.stderr
    assert problem in done.stderr
    if hint is not None:
        assert hint in done.stderr
