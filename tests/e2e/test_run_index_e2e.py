"""Runs register in the machine-wide index as they start, and again when resumed."""

from __future__ import annotations

import json
from pathlib import Path

from outloop_cli.store.run_index import list_index
from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, only_run, run_cli


def test_a_run_registers_in_the_index_and_a_resume_registers_it_again(
    make_repo: RepoFactory,
) -> None:
    loop = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2), limits={"max_iterations": 1})
    repo = make_repo({".outloop/fix.yml": loop})

    first = run_cli(repo, "run", "fix")
    assert first.returncode == 1, first.stderr
    record = only_run(repo)
    (entry,) = list_index()
    assert entry.run_id == record["run_id"]
    assert entry.repo_root == repo.resolve()
    assert entry.common_dir == (repo / ".git").resolve()
    assert entry.paths.run_json.is_file()
    assert entry.loop == "fix"
    assert entry.started_at == record["started_at"]
    registered = json.loads(entry.file.read_text())["registered_at"]

    resumed = run_cli(repo, "resume", record["run_id"], "--max-iterations", "3")
    assert resumed.returncode == 0, resumed.stderr
    (again,) = list_index()
    assert again.run_id == record["run_id"]
    assert json.loads(again.file.read_text())["registered_at"] >= registered
    assert Path(again.repo_root) == repo.resolve()
