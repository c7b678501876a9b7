"""`outloop clean` on real runs: worktrees of runs that are over go, branches stay, live runs are untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    PY,
    agent_cmd,
    counter_goal,
    loop_yaml,
    run_cli,
    runs_dir,
    shared_dir,
)


def _cli(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "outloop_cli", *args],
        cwd=repo,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def _records(repo: Path) -> dict[str, dict[str, Any]]:
    root = runs_dir(repo)
    if not root.is_dir():
        return {}
    return {p.name: json.loads((p / "run.json").read_text()) for p in sorted(root.iterdir())}


def _worktrees(repo: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain`, one dict per entry (flags map to "")."""
    entries: list[dict[str, str]] = []
    for block in git(repo, "worktree", "list", "--porcelain").strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            entry[key] = value
        entries.append(entry)
    return entries


def _branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def _two_loop_repo(make_repo: RepoFactory, marker: Path) -> Path:
    return make_repo(
        {
            ".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1)),
            ".outloop/slow.yml": loop_yaml(
                agent_cmd("sleepy_agent.py", str(marker), "60"),
                counter_goal(1),
                # the marker's directory, shown writable in the default sandbox
                sandbox={"write": [str(marker.parent)]},
            ),
        }
    )


def _run_and_leave_dirty(repo: Path) -> None:
    """Run `fix` and leave an uncommitted file in the worktree of the run it made.

    The new run is the record that was not there before: ids of runs started within one
    second differ only in their random suffix, so the largest id need not be the newest.
    """
    before = set(_records(repo))
    assert run_cli(repo, "run", "fix").returncode == 0
    (newest,) = (record for run_id, record in _records(repo).items() if run_id not in before)
    (Path(newest["worktree"]) / "leftover.txt").write_text("not committed\n")


def _start_slow(repo: Path, marker: Path) -> subprocess.Popen[str]:
    runner = subprocess.Popen(
        [sys.executable, "-m", "outloop_cli", "run", "slow"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the slow run never started its agent"
        assert runner.poll() is None, runner.communicate()
        time.sleep(0.05)
    return runner


def _kill_agent(marker: Path) -> None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(marker).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass


def test_clean_removes_finished_worktrees_and_never_touches_a_running_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    marker = shared_dir(tmp_path)[0] / "slow-agent-started"
    repo = _two_loop_repo(make_repo, marker)
    for _ in range(2):
        # uncommitted leftovers in a finished run's worktree: no later run takes it over
        # (engine/worktree_reuse.py), and clean removes it with them, counted
        _run_and_leave_dirty(repo)
    finished = _records(repo)
    runner = _start_slow(repo, marker)
    try:
        running_id = next(k for k in _records(repo) if k not in finished)
        running = _records(repo)[running_id]
        first_id, first = next(iter(finished.items()))
        branches_before = _branches(repo)

        done = _cli(repo, "clean")
        assert done.returncode == 0, done.stderr
        for run_id, record in finished.items():
            assert not Path(record["worktree"]).exists()
            assert f"removed worktree of {run_id} (finished)" in done.stderr
        assert f"{first_id} (finished): {first['worktree']} (1 uncommitted path(s) discarded)" in (
            done.stderr
        )
        assert f"skipped {running_id}: it is running" in done.stderr
        assert "branches and records stay" in done.stderr
        # the live run is untouched and still working
        assert Path(running["worktree"], "partial.txt").exists()
        assert runner.poll() is None
        assert _branches(repo) == branches_before
        assert set(_records(repo)) == {*finished, running_id}
        # runs have git dirs of their own: git knows no worktree of theirs in the user's repo
        assert [Path(w["worktree"]) for w in _worktrees(repo)] == [repo]
        for run_id in finished:
            assert not (runs_dir(repo) / run_id / "agent.git").exists()
            assert (runs_dir(repo) / run_id / "git" / "HEAD").is_file()
        assert (runs_dir(repo) / running_id / "agent.git").is_dir()
    finally:
        runner.kill()
        runner.communicate(timeout=30)
        _kill_agent(marker)

    # its runner is dead now: a crashed run is over, and its worktree goes too
    done = _cli(repo, "clean")
    assert done.returncode == 0, done.stderr
    assert f"removed worktree of {running_id} (crashed)" in done.stderr
    assert [Path(w["worktree"]) for w in _worktrees(repo)] == [repo]
    # nothing left behind in the state directory either
    assert not Path(running["worktree"]).parent.exists()
    assert _branches(repo) == branches_before
    for record in _records(repo).values():
        # every commit is still reachable from its branch
        assert git(repo, "rev-parse", record["branch"]).strip()
    # a second clean has nothing to do
    again = _cli(repo, "clean")
    assert again.returncode == 0
    assert "nothing to clean" in again.stderr


def test_clean_all_asks_before_deleting_records(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    for _ in range(2):
        # kept dirty, so the next run checks out afresh and each run has a worktree to remove
        _run_and_leave_dirty(repo)
    records = _records(repo)
    branches = _branches(repo)

    for answer in (None, "n\n"):
        refused = _cli(repo, "clean", "--all", stdin=answer)
        assert refused.returncode == 1
        assert "delete the records of 2 run(s)? [y/N]" in refused.stderr
        assert "nothing was removed" in refused.stderr
        assert _records(repo) == records
        assert all(Path(r["worktree"]).is_dir() for r in records.values())

    dry = _cli(repo, "clean", "--all", "--dry-run")
    assert dry.returncode == 0
    assert "would remove" in dry.stderr and "and its record" in dry.stderr
    for record in records.values():
        assert f"worktree {record['worktree']} and its record" in dry.stderr
    assert _records(repo) == records

    done = _cli(repo, "clean", "--all", stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert _records(repo) == {}
    for run_id in records:
        assert f"deleted the record of {run_id}" in done.stderr
    assert "branches stay" in done.stderr
    assert "records stay" not in done.stderr
    assert _branches(repo) == branches
    assert [Path(w["worktree"]) for w in _worktrees(repo)] == [repo]
    assert run_cli(repo, "status").stdout == ""
    # deleted on purpose, so also gone from the machine-wide index (not listed as "gone")
    assert run_cli(repo, "status", "--all", "--json").stdout == ""


def test_clean_all_yes_skips_the_question(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    assert run_cli(repo, "run", "fix").returncode == 0
    done = _cli(repo, "clean", "--all", "--yes")
    assert done.returncode == 0, done.stderr
    assert "[y/N]" not in done.stderr
    assert _records(repo) == {}


def test_clean_removes_the_agents_git_dir_of_a_worktree_deleted_by_hand(
    make_repo: RepoFactory,
) -> None:
    import shutil

    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    assert run_cli(repo, "run", "fix").returncode == 0
    [(run_id, record)] = _records(repo).items()
    shutil.rmtree(record["worktree"])
    done = _cli(repo, "clean")
    assert done.returncode == 0, done.stderr
    assert not (runs_dir(repo) / run_id / "agent.git").exists()
    assert git(repo, "rev-parse", "--verify", record["branch"]).strip()


def test_clean_prunes_worktrees_of_the_older_layout_deleted_by_hand(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # a run of an older outloop had a `git worktree add` checkout
    repo = make_repo({"a.txt": "a\n"})
    old = tmp_path / "old-worktree"
    git(repo, "worktree", "add", "-q", "-b", "outloop/old", str(old))
    import shutil

    shutil.rmtree(old)
    assert any("prunable" in w for w in _worktrees(repo))
    done = _cli(repo, "clean")
    assert done.returncode == 0, done.stderr
    assert [Path(w["worktree"]) for w in _worktrees(repo)] == [repo]


def test_clean_leaves_alone_a_recorded_path_that_is_not_a_worktree(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    assert run_cli(repo, "run", "fix").returncode == 0
    [(run_id, record)] = _records(repo).items()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    # a damaged (or hostile) record names someone else's directory, or the checkout itself
    for victim in (precious, repo):
        data = dict(record, worktree=str(victim))
        (runs_dir(repo) / run_id / "run.json").write_text(json.dumps(data))
        done = _cli(repo, "clean", "--all", "--yes")
        assert done.returncode == 0, done.stderr
        assert f"left {victim} alone: it is not a worktree of this repository" in done.stderr
        assert (precious / "thesis.tex").read_text() == "years of work\n"
        assert (repo / ".outloop" / "fix.yml").is_file()
        assert run_id in _records(repo)
    # the real worktree is no one's now: git still knows it, and prunes nothing it should not
    assert Path(record["worktree"]).is_dir()


def test_a_cleaned_run_resumes_with_git_dirs_found_from_its_records(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )
    assert run_cli(repo, "run", "fix", "--max-iterations", "1").returncode == 1
    [(run_id, record)] = _records(repo).items()
    assert _cli(repo, "clean").returncode == 0
    assert not Path(record["worktree"]).exists()

    done = run_cli(repo, "resume", run_id, "--max-iterations", "3")

    assert done.returncode == 0, done.stderr
    worktree = Path(record["worktree"])
    # the worktree and the agent's git dir came back from outloop's own git dir
    assert (worktree / ".git").read_text() == f"gitdir: {runs_dir(repo) / run_id / 'agent.git'}\n"
    assert git(worktree, "log", "-1", "--format=%H") == git(
        repo, "log", "-1", "--format=%H", record["branch"]
    )
    assert git(worktree, "status", "--porcelain") == ""
    assert _records(repo)[run_id]["stop_reason"] == "goal_met"
