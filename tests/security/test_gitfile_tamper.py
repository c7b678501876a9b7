"""outloop's git never follows a worktree .git file the agent rewrote.

The agent (or code of its that the goal runs) points the worktree's ``.git``
file at a git dir of its own whose config defines a clean filter, and marks
every file with it. outloop's next ``git add`` would run that filter as the
user, outside the sandbox. The gitfile and the worktree's admin files are
guarded like the repository's config: checked after the turn and after the
goal, before any git command, put back, and the run stops. The control runs
outloop's own snapshot on such a worktree and shows the filter firing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_control_outloops_git_would_run_the_planted_filter(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = make_repo({"a.txt": "a\n"})
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "scratch", str(worktree))
    marker = tmp_path / "pwned"
    subprocess.run(
        [sys.executable, str(AGENTS / "gitfile_agent.py"), str(marker)], cwd=worktree, check=True
    )
    (worktree / "b.txt").write_text("b\n")

    tree = Worktree(worktree, "scratch")
    tree.snapshot(tree.changes(), max_file_size=1 << 20)

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
