"""The goal runs code the agent wrote, so it runs in the sandbox too.

The agent of a real `outloop run` plants a ``conftest.py``; the goal's
``pytest`` imports it after the agent's turn, outside anything the agent
itself ran. Under ``sandbox: bwrap`` the payload finds nothing and writes
nothing outside the worktree; the control run (``sandbox: none``) shows the
same payload reaching the user's home, the runner's environment and the
user's hooks, so the sandbox is what stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, loop_yaml, only_run, run_cli, runs_dir

# -s: the payload reports on the goal log (pytest would capture it otherwise)
GOAL = f"{sys.executable} -m pytest -q -s -p no:cacheprovider -p no:randomly test_goal.py"


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "canary-" + secrets.token_hex(16)
    # in the runner's own environment (inherited by `outloop run`), and in the user's home
    monkeypatch.setenv("SOME_TOKEN", value)
    (Path(os.environ["HOME"]) / ".netrc").write_text(f"machine x password {value}\n")
    return value


def _attack(make_repo: RepoFactory, exfil: Path, sandbox: str) -> tuple[Path, dict[str, Any]]:
    repo = make_repo(
        {
            "test_goal.py": "def test_goal():\n    assert False, 'never met'\n",
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("goal_payload_agent.py", str(exfil)),
                GOAL,
                sandbox=sandbox,
                limits={"max_iterations": 1},
            ),
        }
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    log = runs_dir(repo) / str(record["run_id"]) / "logs" / "iter-001-goal.log"
    reports = [line for line in log.read_text().splitlines() if line.startswith("PAYLOAD ")]
    # the payload ran in the goal of iteration 1: the attack was made, not skipped
    assert reports, log.read_text()
    return repo, dict(json.loads(reports[-1].removeprefix("PAYLOAD ")))


def test_a_payload_the_goal_imports_reaches_nothing_in_the_sandbox(
    make_repo: RepoFactory, tmp_path: Path, canary: str
) -> None:
    exfil = tmp_path / "exfil.json"
    repo, found = _attack(make_repo, exfil, "bwrap")

    assert found["netrc"] is None
    assert found["environ_hits"] == 0
    assert found["hook_planted"] is False
    assert not exfil.exists()
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()


def test_control_without_the_sandbox_the_same_payload_gets_everything(
    make_repo: RepoFactory, tmp_path: Path, canary: str
) -> None:
    exfil = tmp_path / "exfil.json"
    repo, found = _attack(make_repo, exfil, "none")

    assert canary in (found["netrc"] or "")
    assert found["environ_hits"] >= 1
    assert found["hook_planted"] is True
    assert canary in exfil.read_text()
    # the hook did land; the git guard, checked after the goal too, put it back
    assert only_run(repo)["stop_reason"] == "protected_path"
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()


def test_a_goal_program_in_a_hidden_directory_stays_visible(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # $HOME and /tmp are empty inside the sandbox; the programs the goal's script
    # names (a venv's python, a tool under $HOME) must still be there
    tool_dir = Path(os.environ["HOME"]) / "tools" / "bin"
    tool_dir.mkdir(parents=True)
    tool = tool_dir / "check-counter"
    tool.write_text("#!/bin/sh\ntest -f counter.txt\n")
    tool.chmod(0o755)
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"), f"{tool} && echo checked", sandbox="bwrap"
            ),
        }
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0, done.stderr
    assert only_run(repo)["stop_reason"] == "goal_met"
