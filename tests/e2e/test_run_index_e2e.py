"""The machine-wide run index through the real CLI: runs register as they start, and
`show`, `stop`, `resume`, `report` and `status --all` find them from any directory."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from outloop_cli.paths import config_home
from outloop_cli.store.run_index import index_dir, list_index
from tests.conftest import RepoFactory
from tests.support.e2e import (
    agent_cmd,
    counter_goal,
    kill_processes_mentioning,
    loop_yaml,
    only_run,
    pid_gone,
    run_cli,
    runs_dir,
    shared_dir,
    start_runner,
    wait_for,
)


def _all(cwd: Path) -> dict[str, dict[str, Any]]:
    done = run_cli(cwd, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return {row["run_id"]: row for row in rows}


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


def test_show_stop_resume_report_and_status_all_work_from_outside_any_repository(
    make_repo: RepoFactory,
    tmp_path: Path,
    elsewhere: Path,
    background: list[subprocess.Popen[str]],
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "agent-started"
    done_repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))},
        name="client-a",
    )
    live_repo = make_repo(
        {
            ".outloop/nightly.yml": loop_yaml(
                agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=sandbox
            )
        },
        name="client-b",
    )
    policy = config_home() / "policy.yml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(f"workspaces:\n  acme:\n    repos: [{json.dumps(str(done_repo))}]\n")
    policy.chmod(0o600)

    assert run_cli(done_repo, "run", "fix").returncode == 0
    done_id = only_run(done_repo)["run_id"]
    runner = start_runner(live_repo, "run", "nightly")
    background.append(runner)
    wait_for(marker)
    live_id = only_run(live_repo)["run_id"]

    rows = _all(elsewhere)
    assert set(rows) == {done_id, live_id}
    assert rows[done_id]["repo"] == str(done_repo.resolve())
    assert rows[done_id]["workspace"] == "acme"
    assert (rows[done_id]["loop"], rows[done_id]["state"]) == ("fix", "finished")
    assert (rows[done_id]["goal"], rows[done_id]["iteration"]) == ("pass", 2)
    assert rows[done_id]["stop_reason"] == "goal_met"
    assert rows[live_id]["repo"] == str(live_repo.resolve())
    assert rows[live_id]["workspace"] is None
    assert (rows[live_id]["state"], rows[live_id]["iteration"]) == ("running", 1)
    assert rows[live_id]["goal"] == "fail"
    assert rows[live_id]["age"] >= 0
    table = run_cli(elsewhere, "status", "--all").stdout.splitlines()
    assert table[0].split() == [
        "RUN", "REPO", "WORKSPACE", "LOOP", "STATE", "ITER", "GOAL", "COST", "AGE"
    ]  # fmt: skip
    by_id = {line.split()[0]: line.split() for line in table[1:]}
    assert by_id[done_id][1:6] == [
        str(done_repo.resolve()),
        "acme",
        "fix",
        "finished",
        "(goal_met)",
    ]
    assert by_id[live_id][1:6] == [str(live_repo.resolve()), "-", "nightly", "running", "1/5"]
    # from the other repository, `status --all` is the same machine-wide list
    assert set(_all(done_repo)) == {done_id, live_id}

    shown = run_cli(elsewhere, "show", live_id[-6:], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "running"
    human = run_cli(elsewhere, "show", done_id).stdout
    assert f"repo      {done_repo.resolve()}" in human

    stopped = run_cli(elsewhere, "stop", live_id, "--wait", "60")
    assert stopped.returncode == 0, stopped.stderr
    runner.communicate(timeout=60)
    assert _all(elsewhere)[live_id]["state"] == "stopped"

    resumed = run_cli(elsewhere, "resume", live_id)
    assert resumed.returncode == 0, resumed.stderr
    record = only_run(live_repo)
    assert (record["state"], record["stop_reason"]) == ("finished", "goal_met")
    # the run went on in its own repository, not in the directory resume was run from
    assert list(elsewhere.iterdir()) == []

    report = run_cli(elsewhere, "report", done_id, "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert done_id in report.stdout and "goal met" in report.stdout.lower()
    verified = run_cli(elsewhere, "audit", "verify", done_id)
    assert verified.returncode == 0, verified.stderr
    events = run_cli(elsewhere, "audit", "show", live_id)
    assert events.returncode == 0, events.stderr
    assert "run_started" in events.stdout


def test_a_killed_runner_shows_crashed_and_a_deleted_repository_gone(
    make_repo: RepoFactory,
    tmp_path: Path,
    elsewhere: Path,
    background: list[subprocess.Popen[str]],
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "agent-started"
    killed_repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=sandbox
            )
        },
        name="killed",
    )
    deleted_repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))},
        name="deleted",
    )
    cleaned_repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))},
        name="cleaned",
    )
    assert run_cli(deleted_repo, "run", "fix").returncode == 0
    deleted_id = only_run(deleted_repo)["run_id"]
    assert run_cli(cleaned_repo, "run", "fix").returncode == 0
    cleaned_id = only_run(cleaned_repo)["run_id"]
    runner = start_runner(killed_repo, "run", "fix")
    background.append(runner)
    wait_for(marker)
    killed_id = only_run(killed_repo)["run_id"]
    assert _all(elsewhere)[killed_id]["state"] == "running"

    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    # its agent may outlive it; found by its command line, which names the marker
    kill_processes_mentioning(str(marker))
    shutil.rmtree(deleted_repo)
    shutil.rmtree(runs_dir(cleaned_repo) / cleaned_id)
    (index_dir() / "20261202-000000-badbad.json").write_text('{"run_id": "20261202-0')

    done = run_cli(elsewhere, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = {json.loads(line)["run_id"]: json.loads(line) for line in done.stdout.splitlines()}
    assert rows[killed_id]["state"] == "crashed"
    assert rows[killed_id]["phase"] == "agent"
    assert rows[deleted_id]["state"] == "gone"
    assert rows[deleted_id]["repo"] == str(deleted_repo.resolve())
    assert rows[deleted_id]["loop"] == "fix"
    assert "no longer exists" in rows[deleted_id]["stop_detail"]
    assert rows[cleaned_id]["state"] == "gone"
    assert rows["20261202-000000-badbad"]["state"] == "unreadable"
    human = run_cli(elsewhere, "status", "--all")
    assert human.returncode == 0 and "Traceback" not in human.stderr
    assert "crashed in agent" in human.stdout
    assert f"{deleted_id}: gone: its repository's git dir" in human.stderr

    gone = run_cli(elsewhere, "show", deleted_id)
    assert gone.returncode == 2
    assert f"run {deleted_id} (repository {deleted_repo.resolve()}) is gone" in gone.stderr
    assert "Traceback" not in gone.stderr
    # the crashed run is picked up again from anywhere
    resumed = run_cli(elsewhere, "resume", killed_id)
    assert resumed.returncode == 0, resumed.stderr
    assert _all(elsewhere)[killed_id]["state"] == "finished"
    assert pid_gone(runner.pid)


def test_status_all_shows_hostile_names_without_terminal_escapes(
    make_repo: RepoFactory, elsewhere: Path
) -> None:
    hostile = "client\x1b]0;owned\x07\x1b[2J\u202e"
    loop = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))
    repo = make_repo({".outloop/fix.yml": loop}, name=hostile)
    assert run_cli(repo, "run", "fix").returncode == 0
    run_id = only_run(repo)["run_id"]
    # a damaged entry's reason quotes what the file held
    (index_dir() / "20261202-000000-e5c4e5.json").write_text('{"run_id": "\\u001b[31m')

    done = run_cli(elsewhere, "status", "--all")

    assert done.returncode == 0, done.stderr
    for stream in (done.stdout, done.stderr):
        assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(run_id)]
    # the escape sequences are gone, the readable rest of the name is there
    assert "/client  " in row
    # the JSON keeps the real name, escaped
    as_json = run_cli(elsewhere, "status", "--all", "--json").stdout
    assert "\x1b" not in as_json
    rows = [json.loads(line) for line in as_json.splitlines()]
    assert str(repo.resolve()) in {r["repo"] for r in rows}
