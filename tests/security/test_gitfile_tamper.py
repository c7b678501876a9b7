"""outloop's git never follows a worktree .git file the agent rewrote.

The agent (or code of its that the goal runs) points the worktree's ``.git``
file at a git dir of its own whose config defines a clean filter, and marks
every file with it. outloop's next ``git add`` would run that filter as the
user, outside the sandbox. The gitfile and the worktree's admin files are
guarded like the repository's config: checked after the turn and after the
goal, put back, and the run stops. Underneath the guard, outloop's git never
follows the gitfile at all: it names the run's own git dir and work tree on
every command. The control runs git the way it finds a repository by itself,
through the gitfile, and shows the filter firing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from outloop_cli.git import rundirs
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.git.worktree import Worktree
from tests.conftest import RepoFactory, git
from tests.support.e2e import AGENTS, agent_cmd, loop_yaml, only_run, run_cli

GOAL = f"{sys.executable} -m pytest -q -p no:cacheprovider -p no:randomly test_x.py"


@pytest.mark.parametrize("when", ["turn", "goal"])
def test_a_rewritten_gitfile_stops_the_run_before_git_runs_again(
    make_repo: RepoFactory, tmp_path: Path, when: str
) -> None:
    marker = tmp_path / "pwned"
    extra = ["--in-goal"] if when == "goal" else []
    repo = make_repo(
        {
            "test_x.py": "def test_x():\n    assert False\n",
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("gitfile_agent.py", str(marker), *extra),
                GOAL,
                sandbox="bwrap",
                limits={"max_iterations": 2},
            ),
        }
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "protected_path", record["stop_detail"]
    assert ".git" in record["stop_detail"]
    assert not marker.exists()
    # put back: the worktree's git link is outloop's again
    gitfile = Path(record["worktree"]) / ".git"
    assert "evil" not in gitfile.read_text()
    assert git(repo, "rev-parse", "--verify", record["branch"])


def test_outloops_git_never_follows_the_rewritten_gitfile(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # the guard aside: outloop's git names its own git dir, so the planted one is never read
    repo = make_repo({"a.txt": "a\n"})
    dirs = RunGitDirs(tmp_path / "own.git", tmp_path / "agent.git", tmp_path / "wt")
    rundirs.create(
        dirs,
        user_objects=repo / ".git" / "objects",
        branch="scratch",
        base=git(repo, "rev-parse", "HEAD").strip(),
    )
    marker = tmp_path / "pwned"
    subprocess.run(
        [sys.executable, str(AGENTS / "gitfile_agent.py"), str(marker)],
        cwd=dirs.work_tree,
        check=True,
    )
    (dirs.work_tree / "b.txt").write_text("b\n")

    tree = Worktree(dirs, "scratch")
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)

    assert not marker.exists()
    assert "b.txt" in snapshot.changed


def test_control_git_that_follows_the_gitfile_runs_the_planted_filter(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # what outloop's git did while it found the repository through the worktree's .git file
    repo = make_repo({"a.txt": "a\n"})
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "scratch", str(worktree))
    marker = tmp_path / "pwned"
    subprocess.run(
        [sys.executable, str(AGENTS / "gitfile_agent.py"), str(marker)], cwd=worktree, check=True
    )
    (worktree / "b.txt").write_text("b\n")

    git(worktree, "add", "--all")

    assert marker.read_text().strip() == "pwned"


def test_resume_puts_the_git_link_back_before_any_git_command(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # a turn that crashed after re-pointing .git leaves it for the next `outloop resume`,
    # whose first git commands (status, add of the unfinished work) would follow it
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"), "false", limits={"max_iterations": 1}
            )
        }
    )
    assert run_cli(repo, "run", "fix").returncode == 1
    record = only_run(repo)
    worktree = Path(record["worktree"])
    marker = tmp_path / "pwned"
    subprocess.run(
        [sys.executable, str(AGENTS / "gitfile_agent.py"), str(marker)], cwd=worktree, check=True
    )

    done = run_cli(repo, "resume", str(record["run_id"]), "--max-iterations", "2")

    assert not marker.exists(), done.stderr
    assert "put back the worktree's git link" in done.stderr
    assert "evil" not in (worktree / ".git").read_text()
    audit = (repo / ".git/outloop/runs" / str(record["run_id"]) / "audit.jsonl").read_text()
    assert '"kind":"git_link"' in audit.replace(" ", "")


def test_resume_never_writes_a_git_link_into_a_directory_the_record_was_edited_to_name(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    import json

    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"), "false", limits={"max_iterations": 1}
            )
        }
    )
    assert run_cli(repo, "run", "fix").returncode == 1
    record = only_run(repo)
    victim = tmp_path / "someone-elses"
    victim.mkdir()
    (victim / "work.txt").write_text("theirs\n")
    run_json = repo / ".git/outloop/runs" / str(record["run_id"]) / "run.json"
    run_json.write_text(json.dumps(dict(record, worktree=str(victim))))

    done = run_cli(repo, "resume", str(record["run_id"]), "--max-iterations", "2")

    assert done.returncode == 3, done.stderr
    assert "is not run" in done.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["work.txt"]
