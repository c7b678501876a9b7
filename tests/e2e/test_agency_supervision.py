"""An operator supervising many repositories at once, as issue 13 is checked.

One `outloop run --repo … --jobs 4` holds four real repositories whose loops
converge, stall, crash their agent and wait for approval at the same time; the
operator watches them with `status --all` from a directory outside every
repository, the runner is killed with `kill -9` while one run waits, and the
waiting run is resumed and approved from there too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import RepoFactory
from tests.support.e2e import PY, agent_cmd, counter_goal, loop_yaml, run_cli


def _status_all(cwd: Path) -> dict[str, dict[str, Any]]:
    done = run_cli(cwd, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return {Path(row["repo"]).name: row for row in rows}


def _wait_for(check: Any, what: str, runner: subprocess.Popen[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if runner.poll() is not None:
            _, err = runner.communicate()
            raise AssertionError(f"the runner exited {runner.returncode} before {what}:\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_converge_stall_crash_and_wait_at_once_then_kill_resume_and_approve_from_anywhere(
    make_repo: RepoFactory, elsewhere: Path, background: list[subprocess.Popen[str]]
) -> None:
    loops = {
        "converges": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2)),
        "stalls": loop_yaml(
            agent_cmd("noop_agent.py"), counter_goal(1), limits={"max_iterations": 9, "stall": 2}
        ),
        "crashes": loop_yaml(
            agent_cmd("crashing_agent.py"), counter_goal(1), limits={"max_agent_errors": 1}
        ),
        "waits": loop_yaml(
            agent_cmd("counter_agent.py"), counter_goal(2), approve={"every_iterations": 1}
        ),
    }
    repos = {name: make_repo({".outloop/fix.yml": text}, name=name) for name, text in loops.items()}
    args = [arg for repo in repos.values() for arg in ("--repo", str(repo))]
    runner = subprocess.Popen(
        [PY, "-m", "outloop_cli", "run", "fix", *args, "--jobs", "4", "--json"],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    background.append(runner)

    def settled() -> dict[str, dict[str, Any]] | None:
        rows = _status_all(elsewhere)
        ended = all(
            rows.get(n, {}).get("state") == "finished" for n in ("converges", "stalls", "crashes")
        )
        waiting = rows.get("waits", {}).get("state") == "waiting_approval"
        return rows if ended and waiting else None

    rows = _wait_for(settled, "three runs to end and one to wait for approval", runner)

    # every state at once, on one machine-wide list, read from outside every repository
    assert rows["converges"]["stop_reason"] == "goal_met"
    assert rows["stalls"]["stop_reason"] == "stalled"
    assert rows["crashes"]["stop_reason"] == "agent_error"
    waiting = rows["waits"]
    assert waiting["approval"]["gate"] == "iterations"
    for name, repo in repos.items():
        assert rows[name]["repo"] == str(repo.resolve())
    table = run_cli(elsewhere, "status", "--all").stdout
    assert "waiting_approval" in table and "goal_met" in table

    # the runner dies with a run waiting: that run is crashed, the ended ones stay as they were
    os.kill(runner.pid, signal.SIGKILL)
    runner.communicate(timeout=30)
    after = _status_all(elsewhere)
    assert after["waits"]["state"] == "crashed"
    for name in ("converges", "stalls", "crashes"):
        assert after[name]["state"] == rows[name]["state"]
        assert after[name]["stop_reason"] == rows[name]["stop_reason"]
    run_id = waiting["run_id"]
    late = run_cli(elsewhere, "approve", run_id)
    assert late.returncode == 2 and "crashed" in late.stderr and "Traceback" not in late.stderr

    # resumed from the operator's directory, it asks again; approved from there, it converges
    resumed = subprocess.Popen(
        [PY, "-m", "outloop_cli", "resume", run_id],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    background.append(resumed)

    def asks_again() -> bool:
        row = _status_all(elsewhere)["waits"]
        approval = row.get("approval") or {}
        return (
            row["state"] == "waiting_approval" and approval.get("id") != waiting["approval"]["id"]
        )

    _wait_for(asks_again, "the resumed run to ask again", resumed)
    approved = run_cli(elsewhere, "approve", run_id, "--as", "operator")
    assert approved.returncode == 0, approved.stderr
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    final = _status_all(elsewhere)["waits"]
    assert final["state"] == "finished" and final["stop_reason"] == "goal_met"
    events = [
        json.loads(line)
        for line in (repos["waits"] / ".git" / "outloop" / "runs" / run_id / "audit.jsonl")
        .read_text()
        .splitlines()
    ]
    granted = [e for e in events if e["event"] == "approval_granted"]
    assert [e["who"] for e in granted] == ["operator"]
    assert run_cli(elsewhere, "audit", "verify", run_id).returncode == 0
