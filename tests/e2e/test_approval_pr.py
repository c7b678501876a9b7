"""`approve: {pr: true}`: the pull request is opened only once a human approves it."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import git
from tests.e2e.test_approval import audit_events, finish, named, waiting
from tests.e2e.test_ci_goal_e2e import Setup, setup
from tests.support.e2e import only_run, run_cli, start_runner

__all__ = ["setup"]


def _with_pr_gate(repo: Path) -> None:
    config = yaml.safe_load((repo / ".outloop/fix.yml").read_text())
    config["pr"] = True
    config["approve"] = {"pr": True}
    config["goal"]["ci"]["grace"] = "5s"
    config["goal"]["ci"]["poll"] = "1s"
    (repo / ".outloop/fix.yml").write_text(yaml.safe_dump(config))
    git(repo, "commit", "-qam", "pr: true, approved by a human")


def test_the_pull_request_waits_for_approval_then_opens_ready(setup: Setup) -> None:
    repo, _, github, _ = setup
    _with_pr_gate(repo)
    runner = start_runner(repo)

    record = waiting(repo, "pr", runner)
    assert github.pulls.get("octo/widgets", []) == []
    assert record["stop_reason"] == "goal_met"  # the run has ended; only the PR waits
    assert "open or update the pull request" in record["approval"]["what"]
    assert run_cli(repo, "approve", record["run_id"], "--as", "reviewer").returncode == 0
    code, err = finish(runner)

    assert code == 0, err
    (pull,) = github.pulls["octo/widgets"]
    assert pull["draft"] is False
    events = [e["event"] for e in audit_events(repo)]
    assert events.index("approval_granted") < events.index("pull_request")
    assert only_run(repo)["state"] == "finished"


def test_a_denied_pull_request_is_not_opened_and_the_run_keeps_its_result(setup: Setup) -> None:
    repo, _, github, _ = setup
    _with_pr_gate(repo)
    runner = start_runner(repo)

    record = waiting(repo, "pr", runner)
    assert run_cli(repo, "deny", record["run_id"], "--reason", "client freeze").returncode == 0
    code, err = finish(runner)

    assert code == 0, err
    assert github.pulls.get("octo/widgets", []) == []
    final = only_run(repo)
    assert final["stop_reason"] == "goal_met"
    assert "the pull request was not opened or updated" in final["stop_detail"]
    assert "client freeze" in final["stop_detail"]
    events = audit_events(repo)
    assert named(events, "pull_request") == []
    assert named(events, "approval_denied")[0]["reason"] == "client freeze"
