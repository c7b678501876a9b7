"""`approve: {credentials: [NAME]}`: the agent gets no access to NAME until a human approves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RepoFactory
from tests.e2e.test_approval import audit_events, finish, named, waiting
from tests.e2e.test_run_credentials import _canary, _policy
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import assert_no_leak
from tests.support.e2e import agent_cmd, loop_yaml, only_run, run_cli, start_runner


def _loop(upstream: str) -> str:
    return loop_yaml(
        agent_cmd("api_agent.py", "API_BASE", "API_KEY"),
        "false",
        credentials={
            "api": {"via": "proxy", "upstream": upstream, "env": "API_BASE", "allow": ["GET /echo"]}
        },
        approve={"credentials": ["api"]},
        limits__max_iterations=1,
    )


def test_a_denied_credential_is_never_granted_and_no_agent_turn_runs(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _canary()
    with UpstreamServer() as upstream:
        repo = make_repo({".outloop/fix.yml": _loop(upstream.url)})
        monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, upstream.url)))
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)
        runner = start_runner(repo)

        record = waiting(repo, "credential", runner)
        assert "credential `api`" in record["approval"]["what"]
        assert named(audit_events(repo), "iteration_started") == []
        denied = run_cli(repo, "deny", record["run_id"], "--reason", "not for this client")
        code, err = finish(runner)
        received = upstream.requests

    assert denied.returncode == 0, denied.stderr
    assert code == 1, err
    final = only_run(repo)
    assert final["stop_reason"] == "approval_denied"
    assert "not for this client" in final["stop_detail"]
    assert received == []
    events = audit_events(repo)
    assert named(events, "agent_exited") == []
    assert named(events, "proxy_request") == []
    assert_no_leak(key, err, *(str(e) for e in events), where="a run output")


def test_an_approved_credential_reaches_the_agent_after_the_approval(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _canary()
    with UpstreamServer() as upstream:
        repo = make_repo({".outloop/fix.yml": _loop(upstream.url)})
        monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, upstream.url)))
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)
        runner = start_runner(repo)

        record = waiting(repo, "credential", runner)
        assert upstream.requests == []
        approved = run_cli(repo, "approve", record["run_id"], "--as", "account-lead")
        code, err = finish(runner)
        received = upstream.requests

    assert approved.returncode == 0, approved.stderr
    assert code == 1, err  # the goal is `false`: one turn, then max_iterations
    assert only_run(repo)["stop_reason"] == "max_iterations"
    assert [r.headers.get("Authorization") for r in received] == [f"Bearer {key}"]
    assert only_run(repo)["approved"] == ["credential:api"]
    events = audit_events(repo)
    order = [e["event"] for e in events]
    assert order.index("approval_granted") < order.index("proxy_request")
    assert named(events, "approval_granted")[0]["who"] == "account-lead"
    assert named(events, "proxy_request")[0]["status"] == 200
