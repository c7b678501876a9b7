"""`outloop run` end to end: real repos, real git, real agent processes, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    PY,
    agent_cmd,
    branch_log,
    checkout_state,
    counter_goal,
    loop_yaml,
    only_run,
    pid_alive,
    run_cli,
    runs_dir,
    settle,
    shared_dir,
)

USER_FILES = {
    "README.md": "a project\n",
    "src/app.py": "print('hi')\n",
    ".gitignore": "build/\n*.log\n",
}


def make_loop_repo(make_repo: RepoFactory, loop: str, name: str = "fix") -> Path:
    repo = make_repo({**USER_FILES, f".outloop/{name}.yml": loop})
    # the user's own uncommitted and untracked work, and a stash, all of which must survive
    (repo / "README.md").write_text("a project, edited but not committed\n")
    (repo / "notes.txt").write_text("untracked notes\n")
    (repo / "debug.log").write_text("ignored file\n")
    (repo / "src" / "app.py").write_text("print('stashed change')\n")
    git(repo, "stash", "push", "-q", "-m", "user stash", "--", "src/app.py")
    git(repo, "add", "README.md")
    (repo / "README.md").write_text("a project, edited again after staging\n")
    settle(repo)
    return repo


def test_loop_converges_commits_each_iteration_and_leaves_checkout_alone(
    make_repo: RepoFactory,
) -> None:
    repo = make_loop_repo(
        make_repo, loop_yaml(agent_cmd("counter_agent.py", "{prompt_file}"), counter_goal(3))
    )
    before = checkout_state(repo)

    done = run_cli(repo, "run", "fix", "--json")

    assert done.returncode == 0, done.stderr
    assert checkout_state(repo) == before
    record = only_run(repo)
    assert record["state"] == "finished"
    assert record["stop_reason"] == "goal_met"
    assert [it["n"] for it in record["iterations"]] == [0, 1, 2, 3]
    assert record["iterations"][0]["goal"]["met"] is False
    assert record["iterations"][3]["goal"]["met"] is True
    # one JSON object per run on stdout, nothing else there
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["run_id"] == record["run_id"]

    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 3
    for n, commit in enumerate(commits, start=1):
        verdict = "goal met" if n == 3 else "goal not met"
        assert commit["body"].splitlines()[0] == f"outloop(fix): iteration {n} — {verdict}"
        assert f"Outloop-Run: {record['run_id']}" in commit["body"]
        assert "Outloop-Loop: fix" in commit["body"]
        assert f"Outloop-Iteration: {n}" in commit["body"]
        assert ("Outloop-Goal: pass" if n == 3 else "Outloop-Goal: fail") in commit["body"]
        assert "Outloop-Agent: counter_agent.py" in commit["body"]
        assert commit["author"] == "counter_agent.py via outloop"
        assert commit["committer"] == "Test User"
        assert commit["committer_email"] == "test@example.com"
    # trailers are real git trailers
    trailers = git(
        repo, "log", "-1", "--format=%(trailers:key=Outloop-Goal,valueonly)", record["branch"]
    )
    assert trailers.strip() == "pass"
    # the branch holds the agent's work, the user's branch does not
    assert git(repo, "show", f"{record['branch']}:counter.txt") == "3\n"
    assert "counter.txt" not in git(repo, "ls-tree", "--name-only", "HEAD")
    # the prompt file the agent read carried the last goal's output as feedback
    second_prompt = (runs_dir(repo) / record["run_id"] / "logs" / "iter-002-prompt.md").read_text()
    assert "Make the goal pass." in second_prompt
    assert "counter is 1" in second_prompt
    # run files exist where SPEC §6 says
    run_dir = runs_dir(repo) / record["run_id"]
    for name in (
        "run.json",
        "audit.jsonl",
        "junit.xml",
        "summary.md",
        "logs/iter-001-agent.log",
        "logs/iter-000-goal.log",
    ):
        assert (run_dir / name).is_file(), name
    # the worktree is outside the checkout and outside any .git directory
    worktree = Path(record["worktree"])
    assert worktree.is_dir()
    assert repo not in worktree.parents
    assert ".git" not in worktree.parts
    assert str(worktree).startswith(os.environ["XDG_STATE_HOME"])


def test_goal_already_met_ends_at_baseline(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("counter_agent.py"), f"{PY} -c pass"))
    done = run_cli(repo, "run")
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met"
    assert len(record["iterations"]) == 1
    assert branch_log(repo, record["branch"], record["base_commit"]) == []


def test_max_iterations_exit_1(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("counter_agent.py"), counter_goal(10)))
    done = run_cli(repo, "run", "fix", "--max-iterations", "2")
    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "max_iterations"
    assert len(branch_log(repo, record["branch"], record["base_commit"])) == 2


def test_stall_when_agent_changes_nothing_makes_empty_commits(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("noop_agent.py"), counter_goal(1), limits={"max_iterations": 9, "stall": 2}
        ),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    record = only_run(repo)
    assert record["stop_reason"] == "stalled"
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 2
    for commit in commits:
        assert git(repo, "diff", "--stat", f"{commit['sha']}~1", commit["sha"]) == ""


def test_stall_when_goal_fails_the_same_way(make_repo: RepoFactory) -> None:
    # the agent changes a file every turn, but the goal's failure never changes
    goal = f"{PY} -c \"import sys,time; print('FAILED test_x in %.3fs' % (time.time() % 1)); sys.exit(1)\""
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("counter_agent.py"), goal, limits={"max_iterations": 9, "stall": 3}),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    assert only_run(repo)["stop_reason"] == "stalled"
    assert len(only_run(repo)["iterations"]) == 4


def test_agent_error_after_consecutive_failures(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("failing_agent.py"),
            counter_goal(1),
            limits={"max_iterations": 9, "max_agent_errors": 2, "stall": 9},
        ),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    record = only_run(repo)
    assert record["stop_reason"] == "agent_error"
    assert [it["agent"]["exit_code"] for it in record["iterations"][1:]] == [1, 1]
    # what the failing agent wrote is still committed: nothing is lost
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 2
    assert "attempt-1.txt" in git(repo, "ls-tree", "--name-only", record["branch"])


def test_protected_path_stops_and_config_comes_from_the_commit(make_repo: RepoFactory) -> None:
    loop = loop_yaml(
        agent_cmd("tamper_agent.py"), counter_goal(1), limits={"max_iterations": 3, "stall": 3}
    )
    repo = make_loop_repo(make_repo, loop)
    # an uncommitted edit in the user's checkout is not what runs either
    (repo / ".outloop" / "fix.yml").write_text(
        loop.replace("max_iterations: 3", "max_iterations: 1")
    )
    settle(repo)
    before = checkout_state(repo)
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    record = only_run(repo)
    assert record["stop_reason"] == "protected_path"
    assert ".outloop/fix.yml" in record["stop_detail"]
    assert record["limits"]["max_iterations"] == 3
    # the tampering turn is not committed; its diff is kept for review
    assert branch_log(repo, record["branch"], record["base_commit"]) == []
    patch = runs_dir(repo) / record["run_id"] / "logs" / "iter-001-protected.patch"
    assert "max_iterations: 99" in patch.read_text()
    assert checkout_state(repo) == before


def test_user_protect_pattern(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("counter_agent.py"), counter_goal(5), protect=["counter.txt"]),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    assert only_run(repo)["stop_reason"] == "protected_path"


def test_timeout_kills_the_agents_whole_process_tree(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("forking_agent.py", str(pid_file)),
            counter_goal(1),
            # long enough for the agent to start and fork on a loaded 2-core runner
            # before the timeout kills its tree; the pid file proves it got that far
            agent__timeout="4s",
            limits={"max_iterations": 1},
            # unsandboxed on purpose: the agent reports its tree's host pids, which a
            # sandbox's PID namespace hides from it; this is outloop's own tree kill
            sandbox="none",
        ),
    )
    started = time.monotonic()
    done = run_cli(repo, "run", "fix")
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    record = only_run(repo)
    assert record["iterations"][1]["agent"]["error"] == "timeout"
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if pid_alive(p)]


def test_idle_timeout_counts_as_agent_error(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("quiet_agent.py"),
            counter_goal(1),
            agent__idle_timeout="1s",
            limits={"max_iterations": 5, "max_agent_errors": 1},
        ),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    record = only_run(repo)
    assert record["stop_reason"] == "agent_error"
    assert record["iterations"][1]["agent"]["error"] == "idle"
    log = runs_dir(repo) / record["run_id"] / "logs" / "iter-001-agent.log"
    assert "quiet agent: thinking" in log.read_text()


def test_max_time_stops_during_a_turn_and_keeps_its_work(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("sleepy_agent.py", str(marker)), counter_goal(1), limits={"max_time": "3s"}
        ),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    record = only_run(repo)
    assert record["stop_reason"] == "max_time"
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 1
    assert commits[0]["body"].startswith("outloop(fix): iteration 1 — goal not evaluated")
    assert "Outloop-Goal: none" in commits[0]["body"]
    assert git(repo, "show", f"{record['branch']}:partial.txt") == "half done\n"


def test_large_and_ignored_files_are_not_committed(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("bigfile_agent.py"), counter_goal(3), commit={"max_file_size": "1MB"}),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    names = git(repo, "ls-tree", "-r", "--name-only", record["branch"]).split()
    assert "small.txt" in names
    assert "big.bin" not in names
    assert "build/out.o" not in names
    assert record["iterations"][1]["skipped_files"] == {"big.bin": 3_000_000}
    assert "big.bin" in done.stderr
    commit = branch_log(repo, record["branch"], record["base_commit"])[0]
    assert "Not committed (too large, 3000000 bytes): big.bin" in commit["body"]
    # still in the worktree for the user to look at
    assert (Path(record["worktree"]) / "big.bin").exists()


def test_flooding_agent_is_streamed_to_its_log(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("flood_agent.py"), counter_goal(3)))
    done = run_cli(repo, "run", "fix", timeout=300)
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    log = runs_dir(repo) / record["run_id"] / "logs" / "iter-001-agent.log"
    assert log.stat().st_size == 200 * 1024 * 1024
    assert record["iterations"][1]["agent"]["output_bytes"] == 200 * 1024 * 1024


def test_goal_artifacts_are_not_blamed_on_the_agent(make_repo: RepoFactory) -> None:
    goal = counter_goal(2).replace(f"{PY} -c", f"echo report > goal-report.txt; {PY} -c")
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("counter_agent.py"), goal))
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    for commit in branch_log(repo, record["branch"], record["base_commit"]):
        files = git(repo, "show", "--name-only", "--format=", commit["sha"]).split()
        assert "goal-report.txt" not in files


def test_junit_failing_names_reach_the_agent(make_repo: RepoFactory) -> None:
    junit_goal = (
        f"{PY} -c \"import pathlib,sys; pathlib.Path('reports').mkdir(exist_ok=True); "
        'pathlib.Path(\'reports/junit.xml\').write_text(\'<testsuite name=\\"s\\" tests=\\"2\\">'
        '<testcase classname=\\"tests.test_a\\" name=\\"test_ok\\"/>'
        '<testcase classname=\\"tests.test_a\\" name=\\"test_broken\\"><failure message=\\"boom\\">trace</failure></testcase>'
        "</testsuite>'); sys.exit(1)\""
    )
    repo = make_loop_repo(
        make_repo,
        loop_yaml(
            agent_cmd("counter_agent.py", "{prompt_file}"),
            junit_goal,
            goal__junit="reports/junit.xml",
            limits={"max_iterations": 2, "stall": 5},
        ),
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    record = only_run(repo)
    goal = record["iterations"][1]["goal"]
    assert goal["tests"] == {"total": 2, "passed": 1, "failed": 1, "errors": 0, "skipped": 0}
    assert goal["failing"] == ["tests.test_a::test_broken"]
    prompt = (runs_dir(repo) / record["run_id"] / "logs" / "iter-002-prompt.md").read_text()
    assert "- tests.test_a::test_broken" in prompt


def test_bad_config_exits_2_with_location_and_writes_nothing(make_repo: RepoFactory) -> None:
    bad = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)).replace(
        "max_iterations", "max_iteration"
    )
    repo = make_loop_repo(make_repo, bad)
    branches_before = git(repo, "branch", "--list")
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 2
    assert ".outloop/fix.yml" in done.stderr
    assert "max_iteration" in done.stderr
    assert "did you mean" in done.stderr
    assert "Traceback" not in done.stderr
    assert not runs_dir(repo).exists()
    assert git(repo, "branch", "--list") == branches_before


def test_missing_agent_exits_3_before_anything_is_made(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo, loop_yaml(["no-such-agent-xyz", "{prompt_file}"], counter_goal(1))
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 3
    assert "no-such-agent-xyz" in done.stderr
    assert "Traceback" not in done.stderr
    assert not runs_dir(repo).exists()


def test_uncommitted_loop_is_explained(make_repo: RepoFactory) -> None:
    repo = make_repo({"README.md": "x\n"})
    (repo / ".outloop").mkdir()
    (repo / ".outloop" / "fix.yml").write_text(
        loop_yaml(agent_cmd("noop_agent.py"), counter_goal(1))
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 2
    assert "not committed" in done.stderr


def test_out_dir_gets_reports(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)))
    out = tmp_path / "reports"
    done = run_cli(repo, "run", "fix", "--out", str(out))
    assert done.returncode == 0, done.stderr
    run_id = only_run(repo)["run_id"]
    for name in ("run.json", "junit.xml", "summary.md", "audit.jsonl"):
        assert (out / run_id / name).is_file()


def _start_runner(repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "outloop_cli", "run", "fix"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_ctrl_c_kills_agent_commits_partial_work_and_exits_130(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "started"
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("sleepy_agent.py", str(marker)), counter_goal(1), sandbox=sandbox),
    )
    before = checkout_state(repo)
    runner = _start_runner(repo)
    _wait_for(marker)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, err
    record = only_run(repo)
    assert record["stop_reason"] == "interrupted"
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 1
    assert "partial.txt" in git(repo, "ls-tree", "--name-only", record["branch"])
    assert checkout_state(repo) == before


def test_sigkill_of_the_runner_leaves_the_checkout_untouched(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "started"
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("sleepy_agent.py", str(marker), "5"), counter_goal(1), sandbox=sandbox),
    )
    before = checkout_state(repo)
    runner = _start_runner(repo)
    _wait_for(marker)
    runner.kill()
    runner.communicate(timeout=30)
    assert checkout_state(repo) == before
    record = only_run(repo)
    assert record["state"] == "running"  # a reader (status) will call it crashed: its pid is gone


def test_failed_run_leaves_the_checkout_untouched(make_repo: RepoFactory) -> None:
    repo = make_loop_repo(
        make_repo,
        loop_yaml(agent_cmd("failing_agent.py"), counter_goal(1), limits={"max_agent_errors": 1}),
    )
    before = checkout_state(repo)
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 1
    assert checkout_state(repo) == before


@pytest.mark.parametrize("identity", ["none", "env"])
def test_committer_fallback_without_user_identity(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch, identity: str
) -> None:
    repo = make_loop_repo(make_repo, loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)))
    (Path(os.environ["HOME"]) / ".gitconfig").write_text("")
    for var in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ):
        monkeypatch.delenv(var, raising=False)
    if identity == "env":
        monkeypatch.setenv("GIT_COMMITTER_NAME", "Env Person")
        monkeypatch.setenv("GIT_COMMITTER_EMAIL", "env@example.com")
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    commit = branch_log(repo, record["branch"], record["base_commit"])[0]
    if identity == "env":
        assert (commit["committer"], commit["committer_email"]) == ("Env Person", "env@example.com")
    else:
        assert (commit["committer"], commit["committer_email"]) == ("outloop", "outloop@localhost")


def test_an_agent_that_vandalises_the_audit_log_stops_the_run_without_a_traceback(
    make_repo: RepoFactory,
) -> None:
    # unsandboxed on purpose: the hash chain is what catches this where there is no
    # sandbox; inside one the audit log is read-only and the write fails
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("audit_vandal_agent.py"), "false", sandbox="none")}
    )

    done = run_cli(repo, "run", "fix")
    verified = run_cli(repo, "audit", "verify")

    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "changed outside outloop" in done.stderr
    record = only_run(repo)
    assert record["state"] == "finished"
    assert record["stop_reason"] == "error"
    assert verified.returncode == 1


def test_a_repository_whose_path_holds_a_line_break_runs_sandboxed(
    make_repo: RepoFactory,
) -> None:
    """Git reads its alternates line by line: the run's stores are C-quoted, or it cannot start."""
    loop = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))
    repo = make_repo({".outloop/fix.yml": loop}, name="client\nrepos/odd")
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met"
    assert record["sandbox"]["active"] is True
    commits = branch_log(repo, record["branch"], record["base_commit"])
    assert len(commits) == 2
    assert run_cli(repo, "audit", "verify", record["run_id"]).returncode == 0
