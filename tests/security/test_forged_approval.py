"""An agent that approves another run's gate by writing its decision file.

Two loops of one repository: `gated` waits at an approval gate (a human must
say whether it may go on), and meanwhile `forger` runs an agent that looks for
waiting runs, beside its own run directory and through the machine-wide run
index, and writes the decision `outloop approve` would write for them.

In the sandbox no run directory exists for the agent (its own, the waiting
run's, the index): the gate keeps waiting until a human answers. The control
run, unsandboxed, shows the attack is real: the waiting run takes the forged
decision, records "forger" as the approver and goes on.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import RepoFactory, git
from tests.e2e.test_approval import finish, wait_until
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli, runs_dir, start_runner


def _record(repo: Path, loop: str) -> dict[str, Any]:
    for path in sorted(runs_dir(repo).glob("*/run.json")):
        try:
            record = dict(json.loads(path.read_text()))
        except ValueError:  # caught mid-rename: read again
            continue
        if record.get("loop") == loop:
            return record
    return {}


def _events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    path = runs_dir(repo) / run_id / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class Attack:
    repo: Path
    runner: subprocess.Popen[str]  # `outloop run gated`, waiting for approval
    waiting: dict[str, Any]  # its record while it waits
    report: str  # what the forger's agent says it did


def _attack(make_repo: RepoFactory, sandbox: str) -> Attack:
    """Start `gated`, run `forger` while it waits."""
    gated = loop_yaml(
        agent_cmd("counter_agent.py"),
        counter_goal(2),
        approve={"every_iterations": 1, "timeout": "5m"},
        sandbox=sandbox,
    )
    forger = loop_yaml(agent_cmd("approval_forger_agent.py"), counter_goal(1), sandbox=sandbox)
    repo = make_repo({".outloop/gated.yml": gated, ".outloop/forger.yml": forger})
    runner = start_runner(repo, "run", "gated")

    def waits() -> dict[str, Any] | None:
        record = _record(repo, "gated")
        return record if record.get("state") == "waiting_approval" else None

    waiting = dict(wait_until(waits, "the gated run to wait for approval", runner=runner))
    attacked = run_cli(repo, "run", "forger")
    assert attacked.returncode == 0, attacked.stderr
    forger_record = _record(repo, "forger")
    report = git(repo, "show", f"{forger_record['branch']}:forger_report.txt")
    return Attack(repo, runner, waiting, report)


def test_a_sandboxed_agent_cannot_approve_a_waiting_run(make_repo: RepoFactory) -> None:
    attack = _attack(make_repo, "bwrap")
    repo, runner, waiting, report = attack.repo, attack.runner, attack.waiting, attack.report
    request = waiting["approval"]["id"]
    assert not [line for line in report.splitlines() if line.startswith("approved ")], report
    assert not (runs_dir(repo) / waiting["run_id"] / "approvals" / f"{request}.json").exists()
    # the gate still waits for a human, who denies it: the forger had no say
    still = _record(repo, "gated")
    assert still["state"] == "waiting_approval" and still["approval"]["id"] == request
    assert run_cli(repo, "deny", waiting["run_id"], "--reason", "not yet").returncode == 0
    code, err = finish(runner)
    assert code == 1, err
    final = _record(repo, "gated")
    assert final["stop_reason"] == "approval_denied"
    events = _events(repo, final["run_id"])
    assert not [e for e in events if e["event"] == "approval_granted"]
    assert [e["reason"] for e in events if e["event"] == "approval_denied"] == ["not yet"]


def test_control_unsandboxed_the_forged_decision_would_approve_the_run(
    make_repo: RepoFactory,
) -> None:
    attack = _attack(make_repo, "none")
    repo, runner, waiting, report = attack.repo, attack.runner, attack.waiting, attack.report
    assert f"approved {waiting['approval']['id']}" in report, report
    code, err = finish(runner)
    assert code == 0, err
    final = _record(repo, "gated")
    assert final["stop_reason"] == "goal_met"
    granted = [e for e in _events(repo, final["run_id"]) if e["event"] == "approval_granted"]
    assert [e["who"] for e in granted] == ["forger"]
