"""The import into the user's repository runs beside the check that the goal left nothing.

After the goal, outloop commits the iteration, brings the commit into the
user's repository (a git process there) and scans its own worktree for what
the goal left behind (a git process there). The two touch different
repositories, so the import runs on a thread of its own while the scan runs
(``Commits.commit(..., import_later=True)`` and ``settle()``). These tests
hold a real run to both halves of that: the two really overlap, and an import
that fails still stops the run as it did when it ran alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RepoFactory, git
from tests.support.e2e import (
    agent_cmd,
    branch_log,
    counter_goal,
    loop_yaml,
    only_run,
    run_cli,
    run_cli_patched,
    runs_dir,
)

# Each import waits (up to WAIT seconds) for the restore's scan of the same iteration to
# begin, and notes whether it did. Run one after the other, the import would come first
# and wait in vain: "alone".
OVERLAP_PROBE = """\
import threading
from pathlib import Path
from outloop_cli.git import repo as repo_module, worktree as worktree_module

WAIT = {wait}
MARKS = Path({marks!r})
scanning = threading.Event()

def _probe(original):
    def probed(self, *args, **kwargs):
        seen = scanning.wait(WAIT)
        with MARKS.open("a") as marks:
            marks.write(("beside" if seen else "alone") + "\\n")
        return original(self, *args, **kwargs)
    return probed

def _before(original, action):
    def wrapped(self, *args, **kwargs):
        action()
        return original(self, *args, **kwargs)
    return wrapped

repo_module.Repository.import_commit = _probe(repo_module.Repository.import_commit)
repo_module.Repository.import_branch = _probe(repo_module.Repository.import_branch)
# a new iteration commit: the scan that follows it has not begun
worktree_module.Worktree.commit = _before(worktree_module.Worktree.commit, scanning.clear)
worktree_module.Worktree.restore = _before(worktree_module.Worktree.restore, scanning.set)
"""


def _probed_run(
    make_repo: RepoFactory, tmp_path: Path, *, wait: float, then: str = ""
) -> tuple[Path, list[str]]:
    """A real three-iteration run under the probe (and ``then``); the repo and the marks."""
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(10))}
    )
    marks = tmp_path / "marks.txt"
    probe = OVERLAP_PROBE.format(marks=str(marks), wait=wait) + then
    done = run_cli_patched(repo, probe, "run", "fix", "--max-iterations", "3")
    assert done.returncode == 1, done.stderr
    return repo, marks.read_text().split()


def test_each_import_runs_while_the_worktree_is_scanned(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, marks = _probed_run(make_repo, tmp_path, wait=10)
    record = only_run(repo)
    assert record["stop_reason"] == "max_iterations"
    # the first import is a fetch (import_branch), the next two ref updates (import_commit)
    assert marks == ["beside", "beside", "beside"]
    commits = [it["commit"] for it in record["iterations"] if it["n"] > 0]
    assert [c["sha"] for c in branch_log(repo, record["branch"], record["base_commit"])] == commits
    audit = runs_dir(repo) / record["run_id"] / "audit.jsonl"
    imported = [
        event["commit"]
        for event in map(json.loads, audit.read_text().splitlines())
        if event["event"] == "imported"
    ]
    assert imported == commits


# the control: the same probe with every commit importing at once, as before
ALONE = """\
from outloop_cli.engine import commit as commit_module

_commit = commit_module.Commits.commit

def commit_alone(self, *args, **kwargs):
    kwargs["import_later"] = False
    return _commit(self, *args, **kwargs)

commit_module.Commits.commit = commit_alone
"""


def test_control_the_probe_sees_an_import_that_runs_before_the_scan(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _, marks = _probed_run(make_repo, tmp_path, wait=0.5, then=ALONE)
    assert marks == ["alone", "alone", "alone"]


def test_an_import_that_fails_beside_the_scan_still_stops_the_run(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo({".outloop/fix.yml": "placeholder\n"})
    loop = loop_yaml(
        agent_cmd("branch_mover_agent.py", str(repo), "2"), counter_goal(10), sandbox="none"
    )
    (repo / ".outloop" / "fix.yml").write_text(loop)
    git(repo, "commit", "-qam", "the loop")
    done = run_cli(repo, "run", "fix", "--max-iterations", "4")
    record = only_run(repo)
    assert done.returncode == 3, done.stderr
    assert record["stop_reason"] == "error"
    assert "update-ref" in record["stop_detail"]
    first, second = (it["commit"] for it in record["iterations"] if it["n"] > 0)
    # the run stopped at the failed import: no third turn
    assert [it["n"] for it in record["iterations"]] == [0, 1, 2]
    # the branch stays where the other writer put it, not overwritten by outloop
    assert git(repo, "rev-parse", record["branch"]).strip() == record["base_commit"]
    assert first and second


def _pushing_repo(make_repo: RepoFactory, tmp_path: Path, agent: list[str]) -> tuple[Path, Path]:
    """A repository whose loop pushes each iteration to a bare repository beside it."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    repo = make_repo({".outloop/fix.yml": "placeholder\n"})
    loop = loop_yaml(agent, counter_goal(10), push=True, sandbox="none")
    (repo / ".outloop" / "fix.yml").write_text(loop)
    git(repo, "commit", "-qam", "the loop")
    git(repo, "remote", "add", "origin", str(remote))
    return repo, remote


def test_the_push_waits_for_the_import_that_brings_the_agents_own_commits(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # the agent's own commits reach the user's store only with the first import's fetch;
    # a push started beside it found their objects missing ("unpacker error")
    repo, remote = _pushing_repo(
        make_repo, tmp_path, agent_cmd("own_commit_agent.py", "olleh", "message")
    )
    done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    record = only_run(repo)
    assert record["stop_reason"] == "max_iterations", record["stop_detail"]
    assert done.returncode == 1, done.stderr
    pushed = git(remote, "rev-parse", f"refs/heads/{record['branch']}").strip()
    assert pushed == git(repo, "rev-parse", record["branch"]).strip()


def test_a_commit_whose_import_failed_is_never_pushed(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, remote = _pushing_repo(
        make_repo, tmp_path, agent_cmd("branch_mover_agent.py", str(tmp_path / "x"), "2")
    )
    # the agent moves the branch in this very repository at turn 2
    loop = (repo / ".outloop" / "fix.yml").read_text().replace(str(tmp_path / "x"), str(repo))
    (repo / ".outloop" / "fix.yml").write_text(loop)
    git(repo, "commit", "-qam", "the loop, for this repository")
    run_cli(repo, "run", "fix", "--max-iterations", "4")
    record = only_run(repo)
    assert record["stop_reason"] == "error"
    first, second = (it["commit"] for it in record["iterations"] if it["n"] > 0)
    # iteration 1 was imported and pushed; iteration 2's import failed, so no push of it
    assert git(remote, "rev-parse", f"refs/heads/{record['branch']}").strip() == first
    assert second != first
