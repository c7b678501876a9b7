"""`outloop status` and `outloop show` on real runs: finished, stopped, running, crashed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    PY,
    agent_cmd,
    counter_goal,
    loop_yaml,
    only_run,
    run_cli,
    runs_dir,
    shared_dir,
)

JUNIT_GOAL = (
    f"{PY} -c \"import pathlib,sys; pathlib.Path('reports').mkdir(exist_ok=True); "
    'pathlib.Path(\'reports/junit.xml\').write_text(\'<testsuite name=\\"s\\" tests=\\"3\\">'
    '<testcase classname=\\"t\\" name=\\"ok\\"/>'
    '<testcase classname=\\"t\\" name=\\"a\\"><failure message=\\"x\\">x</failure></testcase>'
    '<testcase classname=\\"t\\" name=\\"b\\"><failure message=\\"y\\">y</failure></testcase>'
    "</testsuite>'); sys.exit(1)\""
)


def _status(repo: Path) -> list[dict[str, Any]]:
    done = run_cli(repo, "status", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _show(repo: Path, run: str) -> dict[str, Any]:
    done = run_cli(repo, "show", run, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture
def runner_factory() -> Iterator[Any]:
    """Start `outloop run` in the background; kill whatever is left at the end."""
    started: list[tuple[subprocess.Popen[str], str]] = []

    def start(repo: Path, marker: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "outloop_cli", "run", "fix"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append((proc, str(marker)))
        return proc

    yield start
    for proc, marker in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        # the agent of a SIGKILLed runner is orphaned: it names the marker in its argv
        for pid in _processes_mentioning(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_finished_run_in_status_and_show(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )
    assert run_cli(repo, "run", "fix").returncode == 0
    record = only_run(repo)
    run_id = record["run_id"]

    [row] = _status(repo)
    assert row["run_id"] == run_id
    assert row["loop"] == "fix"
    assert row["state"] == "finished"
    assert row["stop_reason"] == "goal_met"
    assert (row["iteration"], row["max_iterations"]) == (2, 5)
    assert (row["goal"], row["failing"]) == ("pass", 0)
    assert row["branch"] == record["branch"]
    assert row["duration"] == pytest.approx(record["duration"])
    assert 0 <= row["age"] < 120

    table = run_cli(repo, "status").stdout.splitlines()
    assert table[0].split() == [
        "RUN", "LOOP", "STATE", "ITER", "PHASE/REASON", "GOAL", "COST", "AGE", "TIME"
    ]  # fmt: skip
    assert table[1].split()[:6] == [run_id, "fix", "finished", "2/5", "goal_met", "pass"]

    shown = _show(repo, run_id[:15])
    assert shown["run_id"] == run_id
    assert shown["state"] == "finished"
    assert shown["worktree_exists"] is True
    rows = shown["rows"]
    assert [r["n"] for r in rows] == [0, 1, 2]
    commits = git(repo, "rev-list", "--reverse", f"{record['base_commit']}..{record['branch']}")
    assert [r["commit"] for r in rows[1:]] == commits.split()
    assert [r["goal"] for r in rows] == ["fail", "fail", "pass"]
    assert rows[1]["agent_exit"] == 0
    assert rows[1]["changed_files"] == 2  # counter.txt, last_prompt.txt
    assert all(r["duration"] > 0 for r in rows)

    human = run_cli(repo, "show", run_id).stdout
    assert f"branch    {record['branch']}" in human
    assert "state     finished — goal_met" in human
    assert "detail    the goal was met after 2 iteration(s)" in human
    lines = human.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("N "))
    assert lines[header].split() == [
        "N",
        "COMMIT",
        "FILES",
        "AGENT",
        "GOAL",
        "FAILING",
        "TIME",
        "COST",
    ]
    assert lines[header + 1].split()[:3] == ["0", "-", "-"]
    assert lines[header + 2].split()[:5] == ["1", rows[1]["commit"][:10], "2", "exit", "0"]
    assert "pass" in lines[header + 3]


def test_failing_counts_and_costs_are_shown(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"),
                JUNIT_GOAL,
                goal__junit="reports/junit.xml",
                limits={"max_iterations": 2, "stall": 5},
            )
        }
    )
    assert run_cli(repo, "run", "fix").returncode == 1
    run_id = only_run(repo)["run_id"]
    [row] = _status(repo)
    assert (row["state"], row["stop_reason"]) == ("finished", "max_iterations")
    assert (row["goal"], row["failing"]) == ("fail", 2)
    assert row["cost_usd"] is None
    assert "fail (2)" in run_cli(repo, "status").stdout
    # an agent that reports its usage leaves a cost per turn in the record
    run_json = runs_dir(repo) / run_id / "run.json"
    data = json.loads(run_json.read_text())
    for it, cost in zip(data["iterations"][1:], (0.125, 0.25), strict=True):
        it["agent"]["cost_usd"] = cost
    run_json.write_text(json.dumps(data))
    [row] = _status(repo)
    assert row["cost_usd"] == pytest.approx(0.375)
    assert "$0.38" in run_cli(repo, "status").stdout
    shown = run_cli(repo, "show", run_id).stdout
    assert "cost      $0.38" in shown
    assert "$0.12" in shown and "$0.25" in shown


def test_running_then_crashed(make_repo: RepoFactory, tmp_path: Path, runner_factory: Any) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "agent-started"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("sleepy_agent.py", str(marker), "60"),
                counter_goal(1),
                sandbox=sandbox,
            )
        }
    )
    runner = runner_factory(repo, marker)
    _wait_for(marker)
    [row] = _status(repo)
    assert row["state"] == "running"
    assert (row["iteration"], row["max_iterations"]) == (1, 5)
    assert row["phase"] == "agent"
    assert row["pid"] == runner.pid
    assert row["goal"] == "fail"  # the baseline
    assert row["duration"] > 0
    shown = _show(repo, row["run_id"])
    assert shown["state"] == "running"
    assert shown["rows"][-1]["n"] == 1
    assert shown["rows"][-1]["in_progress"] is True
    human = run_cli(repo, "show", row["run_id"]).stdout
    assert f"running — iteration 1, agent (pid {runner.pid}" in human
    assert "working…" in human

    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    [row] = _status(repo)
    # the record still says running; nobody holds the run any more
    assert only_run(repo)["state"] == "running"
    assert row["state"] == "crashed"
    assert row["phase"] == "agent"
    table = run_cli(repo, "status").stdout
    assert "crashed" in table and "died in agent" in table
    human = run_cli(repo, "show", row["run_id"]).stdout
    assert f"crashed — its process died; `outloop resume {row['run_id']}` continues it" in human


def test_stopped_on_request(make_repo: RepoFactory, tmp_path: Path, runner_factory: Any) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "agent-started"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("sleepy_agent.py", str(marker), "1"),
                counter_goal(5),
                sandbox=sandbox,
            )
        }
    )
    runner = runner_factory(repo, marker)
    _wait_for(marker)
    [row] = _status(repo)
    (runs_dir(repo) / row["run_id"] / "stop-requested").write_text("after-step\n")
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 1, err
    [row] = _status(repo)
    assert row["state"] == "stopped"
    assert row["stop_reason"] == "stopped"
    assert row["iteration"] == 1
    assert "stopped" in run_cli(repo, "status").stdout


def test_interrupted_counts_as_stopped(
    make_repo: RepoFactory, tmp_path: Path, runner_factory: Any
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "agent-started"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("sleepy_agent.py", str(marker), "60"),
                counter_goal(5),
                sandbox=sandbox,
            )
        }
    )
    runner = runner_factory(repo, marker)
    _wait_for(marker)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    [row] = _status(repo)
    assert (row["state"], row["stop_reason"]) == ("stopped", "interrupted")


def test_unknown_or_ambiguous_run(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    empty = run_cli(repo, "status")
    assert empty.returncode == 0
    assert empty.stdout == ""
    assert "no runs in this repository yet" in empty.stderr
    assert run_cli(repo, "status", "--json").stdout == ""
    for _ in range(2):
        assert run_cli(repo, "run", "fix").returncode == 0
    for args, words in (
        (("show", "nope"), "no run matches `nope`"),
        (("show", "2"), "`2` matches 2 runs"),
    ):
        done = run_cli(repo, *args)
        assert done.returncode == 2
        assert words in done.stderr
        assert "hint:" in done.stderr
        assert "Traceback" not in done.stderr


def test_status_outside_a_repository(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "status")
    assert done.returncode == 2
    assert "not inside a git repository" in done.stderr


def test_an_unreadable_record_does_not_hide_the_others(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    for _ in range(2):
        assert run_cli(repo, "run", "fix").returncode == 0
    first, second = sorted(p.name for p in runs_dir(repo).iterdir())
    (runs_dir(repo) / first / "run.json").write_text("{damaged")
    rows = {r["run_id"]: r for r in _status(repo)}
    assert rows[first]["state"] == "unreadable"
    assert "is not valid JSON" in rows[first]["stop_detail"]
    assert rows[second]["state"] == "finished"
    done = run_cli(repo, "show", first)
    assert done.returncode == 3
    assert "is not valid JSON" in done.stderr


def test_status_filters_by_loop_and_show_notes_a_removed_worktree(make_repo: RepoFactory) -> None:
    loop = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))
    repo = make_repo({".outloop/fix.yml": loop, ".outloop/other.yml": loop})
    assert run_cli(repo, "run", "fix", "other").returncode == 0
    assert {r["loop"] for r in _status(repo)} == {"fix", "other"}
    [row] = [
        json.loads(x)
        for x in run_cli(repo, "status", "--loop", "other", "--json").stdout.splitlines()
    ]
    assert row["loop"] == "other"
    shutil.rmtree(row["worktree"])
    shown = run_cli(repo, "show", row["run_id"]).stdout
    assert f"worktree  {row['worktree']}  (removed)" in shown
    assert _show(repo, row["run_id"])["worktree_exists"] is False
