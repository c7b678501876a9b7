"""`outloop run LOOP --repo …`: one loop in many real repositories, through the real CLI.

Each repository gets the run a lone `outloop run` there would get; one repository's
failure is its own result; `--jobs` really runs them at once (the agents' own records
show it); Ctrl-C stops them all, and a killed runner leaves crashed runs behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from outloop_cli.paths import config_home
from outloop_cli.store.run_index import list_index
from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    PY,
    agent_cmd,
    branch_log,
    counter_goal,
    kill_processes_mentioning,
    loop_yaml,
    only_run,
    processes_mentioning,
    run_cli,
    shared_dir,
    wait_for,
)


def _start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "outloop_cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _status_all(cwd: Path) -> dict[str, dict[str, Any]]:
    done = run_cli(cwd, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    return {row["run_id"]: row for row in _lines(done.stdout)}


def _write_policy(text: str) -> None:
    policy = config_home() / "policy.yml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(text)
    policy.chmod(0o600)


def test_three_repos_one_converges_one_has_a_broken_loop_one_crashes_its_agent(
    make_repo: RepoFactory, elsewhere: Path
) -> None:
    good = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))},
        name="good",
    )
    broken = make_repo(
        {".outloop/fix.yml": "agent:\n  preset: command\n  command: [x]\n  timeout: soon\n"},
        name="broken",
    )
    crashing = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("crashing_agent.py"), counter_goal(1), limits={"max_agent_errors": 1}
            )
        },
        name="crashing",
    )
    _write_policy(f"workspaces:\n  client-good:\n    repos: [{json.dumps(str(good))}]\n")

    done = run_cli(
        elsewhere,
        "run",
        "fix",
        "--repo",
        str(good),
        "--repo",
        str(broken),
        "--repo",
        str(crashing),
        "--jobs",
        "3",
        "--json",
    )

    # the bad loop file is the most severe result (2 before 1), as in a lone run
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    first, second, third = _lines(done.stdout)
    assert first["repo"] == str(good)
    assert (first["state"], first["stop_reason"], first["exit_code"]) == ("finished", "goal_met", 0)
    assert second["repo"] == str(broken)
    assert (second["state"], second["run_id"], second["exit_code"]) == ("not_started", None, 2)
    # the same file:line:col a lone run there would print
    assert ".outloop/fix.yml@" in second["error"] and ":4:" in second["error"]
    assert "timeout" in second["error"]
    assert third["repo"] == str(crashing)
    assert (third["stop_reason"], third["exit_code"]) == ("agent_error", 1)
    assert third["iterations"][1]["agent"]["exit_code"] == 134

    # every run in its own repository, its own worktree, its own audit chain
    good_run, crash_run = only_run(good), only_run(crashing)
    assert not (broken / ".git" / "outloop" / "runs").exists()
    assert good_run["worktree"] != crash_run["worktree"]
    assert git(good, "show", f"{good_run['branch']}:counter.txt") == "2\n"
    assert "before-crash.txt" in git(crashing, "ls-tree", "--name-only", crash_run["branch"])
    for repo, run in ((good, good_run), (crashing, crash_run)):
        verified = run_cli(repo, "audit", "verify", run["run_id"])
        assert verified.returncode == 0, verified.stderr
    # the workspace came from the user's policy, per repository
    workspaces = {entry.repo_root: entry.workspace for entry in list_index()}
    assert workspaces == {good.resolve(): "client-good", crashing.resolve(): None}
    rows = _status_all(elsewhere)
    assert rows[good_run["run_id"]]["workspace"] == "client-good"
    assert "❌ " + str(broken) + " (fix): not run — exit 2" in done.stderr
    assert "✅ " + str(good) + " (fix): goal_met" in done.stderr


def test_jobs_2_runs_two_repositories_at_once_and_never_three(
    make_repo: RepoFactory, tmp_path: Path, elsewhere: Path
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    repos = [
        make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("rendezvous_agent.py", str(shared), name, "2"),
                    counter_goal(1),
                    sandbox=sandbox,
                )
            },
            name=name,
        )
        for name in ("one", "two", "three")
    ]
    args = [arg for repo in repos for arg in ("--repo", str(repo))]

    done = run_cli(elsewhere, "run", "fix", *args, "--jobs", "2", "--json")

    assert done.returncode == 0, done.stderr
    assert [row["stop_reason"] for row in _lines(done.stdout)] == ["goal_met"] * 3
    spans = {}
    for name in ("one", "two", "three"):
        start = float((shared / f"{name}.start").read_text())
        end, how = (shared / f"{name}.end").read_text().split()
        spans[name] = (start, float(end), how)
    # every agent saw a second one started while it ran: two turns were under way at once
    assert {how for _, _, how in spans.values()} == {"met"}
    first_two = sorted(spans.values())[:2]
    assert max(s for s, _, _ in first_two) < min(e for _, e, _ in first_two)
    # and never three: whenever an agent started, at most one other was running
    for start, _, _ in spans.values():
        running = [n for n, (s, e, _) in spans.items() if s <= start <= e]
        assert len(running) <= 2, spans


def test_globs_and_groups_from_the_user_config_and_a_missing_repository(
    make_repo: RepoFactory, tmp_path: Path, elsewhere: Path
) -> None:
    loop = {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    clients = tmp_path / "clients"
    a = make_repo(loop, name="clients/a")
    b = make_repo(loop, name="clients/b")
    (clients / "not-a-repo").mkdir()
    (clients / "notes.txt").write_text("a file next to the checkouts\n")
    extra = make_repo(loop, name="extra")
    groups = config_home() / "repos.yml"
    groups.parent.mkdir(parents=True, exist_ok=True)
    groups.write_text(
        f"groups:\n  clients: [{json.dumps(str(clients) + '/*')}, {json.dumps(str(extra))}]\n"
    )

    done = run_cli(
        elsewhere, "run", "fix", "--repo", "@clients", "--repo", str(a), "--repo", "gone", "--json"
    )

    # the missing one is a usage error for it alone; a and b are not run twice
    assert done.returncode == 2, done.stderr
    rows = _lines(done.stdout)
    assert [row["repo"] for row in rows] == [str(a), str(b), str(extra), str(elsewhere / "gone")]
    assert [row["exit_code"] for row in rows] == [0, 0, 0, 2]
    assert "is not a directory" in rows[3]["error"]

    # a quoted glob is expanded by outloop, also from a relative directory
    again = run_cli(tmp_path, "run", "fix", "--repo", "clients/*", "--json")
    assert again.returncode == 0, again.stderr
    assert [row["repo"] for row in _lines(again.stdout)] == [str(a), str(b)]

    unknown = run_cli(elsewhere, "run", "fix", "--repo", "@nightly")
    assert unknown.returncode == 2
    assert f"no repository group `nightly` in {groups}" in unknown.stderr
    assert "@clients" in unknown.stderr

    groups.write_text("groups:\n  clients: [relative/path]\n  Bad: [/x]\n")
    bad = run_cli(elsewhere, "run", "fix", "--repo", "@clients")
    assert bad.returncode == 2
    assert f"{groups}:2:13: groups.clients[0]: 'relative/path' is not an absolute path" in (
        bad.stderr
    )
    assert f"{groups}:3:3: groups: expected a group name, got 'Bad'" in bad.stderr
    assert "Traceback" not in bad.stderr
    # nothing ran for a bad groups file
    assert len(list_index()) == 5


def _sleepy_repos(
    make_repo: RepoFactory, shared: Path, sandbox: dict[str, Any], names: list[str]
) -> list[Path]:
    return [
        make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("once_sleepy_agent.py", str(shared / f"{name}.pid")),
                    counter_goal(2),
                    sandbox=sandbox,
                )
            },
            name=name,
        )
        for name in names
    ]


def test_ctrl_c_stops_every_run_cleanly(
    make_repo: RepoFactory,
    tmp_path: Path,
    elsewhere: Path,
    background: list[subprocess.Popen[str]],
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    names = ["a", "b", "c"]
    repos = _sleepy_repos(make_repo, shared, sandbox, names)
    args = [arg for repo in repos for arg in ("--repo", str(repo))]
    runner = _start(elsewhere, "run", "fix", *args, "--jobs", "3", "--json")
    background.append(runner)
    for name in names:
        wait_for(shared / f"{name}.pid", timeout=60)
    # each agent's command line names its marker, in the shared directory
    assert len(processes_mentioning(str(shared))) >= 3

    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=90)

    assert runner.returncode == 130, err
    assert "Traceback" not in err
    rows = _lines(out)
    assert [row["repo"] for row in rows] == [str(repo) for repo in repos]
    assert {(row["state"], row["stop_reason"], row["exit_code"]) for row in rows} == {
        ("finished", "interrupted", 130)
    }
    # nothing of any run is left running
    assert processes_mentioning(str(shared)) == []
    statuses = _status_all(elsewhere)
    assert {row["state"] for row in statuses.values()} == {"stopped"}
    for repo in repos:
        record = only_run(repo)
        # the interrupted turn's work is kept as a commit on the run's branch
        commits = branch_log(repo, record["branch"], record["base_commit"])
        assert len(commits) == 1
        assert git(repo, "show", f"{record['branch']}:counter.txt") == "1\n"
        assert git(repo, "status", "--porcelain") == ""
    # the worktrees were left consistent: a run picks up from where it stopped
    resumed = run_cli(elsewhere, "resume", rows[0]["run_id"])
    assert resumed.returncode == 0, resumed.stderr
    assert only_run(repos[0])["stop_reason"] == "goal_met"


def test_ctrl_c_before_a_queued_repository_started_leaves_it_not_started(
    make_repo: RepoFactory,
    tmp_path: Path,
    elsewhere: Path,
    background: list[subprocess.Popen[str]],
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    repos = _sleepy_repos(make_repo, shared, sandbox, ["first", "queued"])
    args = [arg for repo in repos for arg in ("--repo", str(repo))]
    runner = _start(elsewhere, "run", "fix", *args, "--jobs", "1", "--json")
    background.append(runner)
    wait_for(shared / "first.pid", timeout=60)

    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=90)

    assert runner.returncode == 130, err
    first, queued = _lines(out)
    assert first["stop_reason"] == "interrupted"
    assert (queued["state"], queued["exit_code"]) == ("not_started", 130)
    assert "interrupted" in queued["error"]
    assert not (repos[1] / ".git" / "outloop" / "runs").exists()


def test_kill_9_of_the_runner_leaves_every_run_crashed_in_status_all(
    make_repo: RepoFactory,
    tmp_path: Path,
    elsewhere: Path,
    background: list[subprocess.Popen[str]],
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    names = ["x", "y"]
    repos = _sleepy_repos(make_repo, shared, sandbox, names)
    args = [arg for repo in repos for arg in ("--repo", str(repo))]
    runner = _start(elsewhere, "run", "fix", *args, "--jobs", "2")
    background.append(runner)
    for name in names:
        wait_for(shared / f"{name}.pid", timeout=60)
    assert {row["state"] for row in _status_all(elsewhere).values()} == {"running"}

    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    try:
        rows = _status_all(elsewhere)
        assert {row["state"] for row in rows.values()} == {"crashed"}
        assert {row["phase"] for row in rows.values()} == {"agent"}
        assert {row["repo"] for row in rows.values()} == {str(r.resolve()) for r in repos}
        table = run_cli(elsewhere, "status", "--all").stdout
        assert table.count("crashed in agent") == 2
    finally:
        # the agents of a SIGKILLed runner may be orphans; their command lines name the markers
        kill_processes_mentioning(str(shared))


def test_a_repository_the_policy_refuses_is_refused_alone(
    make_repo: RepoFactory, elsewhere: Path
) -> None:
    allowed = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))},
        name="allowed",
    )
    wants_a_key = loop_yaml(
        agent_cmd("counter_agent.py"),
        counter_goal(1),
        credentials={"api": {"via": "proxy", "upstream": "http://127.0.0.1:9", "env": "API"}},
    )
    refused = make_repo({".outloop/fix.yml": wants_a_key}, name="refused")
    # the secret belongs to another client's repositories only
    _write_policy(
        'workspaces:\n  client-b:\n    repos: ["/nowhere/client-b"]\n    secrets: [api]\n'
    )

    done = run_cli(
        elsewhere, "run", "fix", "--repo", str(refused), "--repo", str(allowed), "--json"
    )

    assert done.returncode == 3, done.stderr
    refused_row, allowed_row = _lines(done.stdout)
    assert (refused_row["state"], refused_row["exit_code"]) == ("not_started", 3)
    assert "refused" in refused_row["error"] and "api" in refused_row["error"]
    assert not (refused / ".git" / "outloop" / "runs").exists()
    assert (allowed_row["stop_reason"], allowed_row["exit_code"]) == ("goal_met", 0)
