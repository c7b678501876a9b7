"""`outloop stop` and `outloop resume` against real runs in real repos."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import RepoFactory, git
from tests.e2e.test_run_e2e import make_loop_repo
from tests.support.e2e import (
    agent_cmd,
    branch_log,
    checkout_state,
    counter_goal,
    loop_yaml,
    only_run,
    pid_gone,
    run_cli,
    shared_dir,
    start_runner,
    wait_for,
)

# These tests watch the agent's host pid, which the sandbox's PID namespace hides from
# the agent itself (it would write its namespaced pid): they run it unsandboxed on
# purpose, to prove outloop's own kill and resume on the host. A run in the default
# sandbox is killed whole with it (tests/security/test_fs_sandbox.py).
HOST_PIDS = "none"


def _markers(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """The agent's start marker, in a directory the default sandbox shows it writable."""
    shared, sandbox = shared_dir(tmp_path)
    return shared / "agent-pid", sandbox


def _run_id(repo: Path) -> str:
    return str(only_run(repo)["run_id"])


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_stop_kills_the_agent_commits_its_work_and_resume_finishes(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "agent-pid"
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=HOST_PIDS
        ),
    )
    before = checkout_state(repo)
    runner = start_runner(repo)
    wait_for(marker)
    agent_pid = int(marker.read_text())
    run_id = _run_id(repo)

    stopped = run_cli(repo, "stop", run_id[-6:])

    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stderr
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 1, err
    assert _wait_gone(agent_pid), "the agent survived `outloop stop`"
    record = only_run(repo)
    assert record["stop_reason"] == "stopped"
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 1
    assert "Outloop-Goal: none" in commits[0]["body"]
    assert git(repo, "show", f"{record['branch']}:counter.txt").strip() == "1"

    resumed = run_cli(repo, "resume", run_id, "--json")

    assert resumed.returncode == 0, resumed.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met"
    assert record["run_id"] == run_id
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert [c["body"].splitlines()[0] for c in commits] == [
        "outloop(fix): iteration 1 — goal not evaluated",
        "outloop(fix): iteration 2 — goal met",
    ]
    audit = (repo / ".git/outloop/runs" / run_id / "audit.jsonl").read_text()
    assert '"event": "run_resumed"' in audit
    assert checkout_state(repo) == before


def test_stop_after_step_lets_the_turn_and_goal_finish(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    marker, sandbox = _markers(tmp_path)
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("once_sleepy_agent.py", str(marker), "2"), counter_goal(5), sandbox=sandbox
        ),
    )
    runner = start_runner(repo)
    wait_for(marker)

    stopped = run_cli(repo, "stop", _run_id(repo), "--after-step")

    assert stopped.returncode == 0, stopped.stderr
    runner.communicate(timeout=30)
    assert runner.returncode == 1
    record = only_run(repo)
    assert record["stop_reason"] == "stopped"
    agent_turns = [it for it in record["iterations"] if it["n"] > 0]
    assert len(agent_turns) == 1
    assert agent_turns[0]["goal"] is not None, "the goal of the finished step was not evaluated"
    assert agent_turns[0]["agent"]["exit_code"] == 0


def test_resume_after_sigkill_kills_the_orphaned_agent_and_keeps_its_work(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "agent-pid"
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=HOST_PIDS
        ),
    )
    before = checkout_state(repo)
    runner = start_runner(repo)
    wait_for(marker)
    agent_pid = int(marker.read_text())
    runner.kill()
    runner.communicate(timeout=30)
    assert not pid_gone(agent_pid), "the agent should outlive a SIGKILLed runner"
    run_id = _run_id(repo)
    # the user looks at the worktree from a shell of their own: resume must leave it alone
    bystander = subprocess.Popen(["sleep", "60"], cwd=only_run(repo)["worktree"])

    refused = run_cli(repo, "stop", run_id)
    assert refused.returncode == 2
    assert "crashed" in refused.stderr

    resumed = run_cli(repo, "resume", run_id)

    assert resumed.returncode == 0, resumed.stderr
    assert pid_gone(agent_pid), "resume left the crashed run's agent running"
    assert bystander.poll() is None, "resume killed a process that was not the run's"
    bystander.kill()
    bystander.wait()
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met"
    commits = branch_log(repo, record["branch"], record["base_commit"])
    # the half-done turn is kept as its own commit, then the loop goes on
    assert len(commits) == 2
    assert checkout_state(repo) == before


def test_resume_recreates_a_removed_worktree(make_repo: RepoFactory, tmp_path: Path) -> None:
    marker, sandbox = _markers(tmp_path)
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=sandbox),
    )
    runner = start_runner(repo)
    wait_for(marker)
    run_id = _run_id(repo)
    assert run_cli(repo, "stop", run_id).returncode == 0
    runner.communicate(timeout=30)
    worktree = Path(only_run(repo)["worktree"])
    shutil.rmtree(worktree)

    resumed = run_cli(repo, "resume", run_id)

    assert resumed.returncode == 0, resumed.stderr
    assert worktree.is_dir()
    assert only_run(repo)["stop_reason"] == "goal_met"


def test_resume_refuses_a_finished_goal_and_an_unknown_run(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)))
    assert run_cli(repo, "run", "fix").returncode == 0
    run_id = _run_id(repo)

    again = run_cli(repo, "resume", run_id)
    unknown = run_cli(repo, "resume", "nope")

    assert again.returncode == 2
    assert "already met its goal" in again.stderr
    assert unknown.returncode == 2
    assert "Traceback" not in again.stderr + unknown.stderr


def test_resume_with_exhausted_iterations_asks_for_a_new_limit(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("counter_agent.py"), counter_goal(3), limits={"max_iterations": 1}),
    )
    assert run_cli(repo, "run", "fix").returncode == 1
    run_id = _run_id(repo)

    refused = run_cli(repo, "resume", run_id)
    extended = run_cli(repo, "resume", run_id, "--max-iterations", "3")

    assert refused.returncode == 2
    assert "--max-iterations" in refused.stderr
    assert extended.returncode == 0, extended.stderr
    record = only_run(repo)
    assert [it["n"] for it in record["iterations"]] == [0, 1, 2, 3]


def test_ctrl_c_with_concurrent_loops_interrupts_every_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    first, second = tmp_path / "a-pid", tmp_path / "b-pid"
    repo = make_repo(
        {
            ".outloop/a.yml": loop_yaml(
                agent_cmd("once_sleepy_agent.py", str(first)), counter_goal(9), sandbox=HOST_PIDS
            ),
            ".outloop/b.yml": loop_yaml(
                agent_cmd("once_sleepy_agent.py", str(second)), counter_goal(9), sandbox=HOST_PIDS
            ),
        }
    )
    runner = start_runner(repo, "run", "a", "b", "--jobs", "2", "--json")
    wait_for(first)
    wait_for(second)
    pids = [int(first.read_text()), int(second.read_text())]

    os.kill(runner.pid, signal.SIGINT)
    out, err = runner.communicate(timeout=30)

    assert runner.returncode == 130, err
    assert all(_wait_gone(pid) for pid in pids)
    reasons = sorted(line.split('"stop_reason": "')[1].split('"')[0] for line in out.splitlines())
    assert reasons == ["interrupted", "interrupted"]


def test_a_second_run_of_a_running_loop_is_refused_unless_parallel(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    marker, sandbox = _markers(tmp_path)
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=sandbox),
    )
    runner = start_runner(repo)
    wait_for(marker)
    first = _run_id(repo)

    refused = run_cli(repo, "run", "fix")
    allowed = run_cli(repo, "run", "fix", "--parallel", "--json")

    assert refused.returncode == 3
    assert "already running" in refused.stderr and first in refused.stderr
    assert "--parallel" in refused.stderr
    # the second run's agent sees the marker and does not hang: it converges on its own
    assert allowed.returncode == 0, allowed.stderr
    assert run_cli(repo, "stop", first).returncode == 0
    runner.communicate(timeout=30)
    assert runner.returncode == 1
