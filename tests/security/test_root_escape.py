"""Root is not root in the sandbox: an agent run as root cannot unmount its way out.

As root, bubblewrap keeps the caller's capabilities unless told otherwise; an
agent could then unmount the read-only bind over the repository's hooks and
write through to the user's repository. The run's sandbox gives the agent its
own user namespace with every capability dropped and no nested namespace. The
control runs the same attack under the old view (no user namespace, no
capability drop): as root it gets through, which proves the new flags are what
stop it. As a normal user the kernel refuses both, and the tests say so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from outloop_cli.sandbox.bwrap import GitMounts, bwrap_program, wrap
from tests.conftest import RepoFactory, git
from tests.support.e2e import AGENTS, PY, agent_cmd, loop_yaml, only_run, run_cli, runs_dir

ROOT = os.geteuid() == 0


def _report(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    return dict(json.loads(lines[-1]))


def test_a_root_agent_cannot_unmount_the_read_only_binds(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # the user's object store: the one part of the repository the sandbox shows (read-only)
    objects = tmp_path / "repo1" / ".git" / "objects"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("root_escape_agent.py", str(objects)), "false", sandbox="bwrap"
            )
        }
    )

    done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    log = runs_dir(repo) / str(record["run_id"]) / "logs" / "iter-001-agent.log"
    found = _report(log.read_text())
    assert found["euid"] == os.geteuid()
    assert found == {**found, "umount": False, "remount_rw": False, "unshare_root": False}
    assert found["hook_written"] is False
    assert not (objects / "post-checkout").exists()
    assert record["stop_reason"] == "max_iterations"


def test_control_the_old_view_lets_root_write_through(make_repo: RepoFactory) -> None:
    repo = make_repo({"README": "x\n"})
    worktree = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", "scratch", str(worktree))
    view = wrap(
        [PY, str(AGENTS / "root_escape_agent.py")],
        bwrap=bwrap_program(os.environ.get("PATH")),
        worktree=worktree,
        git=GitMounts((), repo / ".git"),
        path_env=os.environ.get("PATH"),
    )
    # the view as it was before: the whole git dir writable, its hooks bound read-only on it
    hooks = str((repo / ".git" / "hooks").resolve())
    at = view.index(str((repo / ".git").resolve())) + 2
    view[at:at] = ["--ro-bind", hooks, hooks]
    # the view as it was before: no user namespace, capabilities kept
    for flag in ("--unshare-user", "--disable-userns"):
        if flag in view:
            view.remove(flag)
    at = view.index("--cap-drop")
    del view[at : at + 2]

    done = subprocess.run(view, cwd=worktree, capture_output=True, text=True, timeout=60)

    found = _report(done.stdout)
    planted = (repo / ".git" / "hooks" / "post-checkout").exists()
    if ROOT:
        assert found["umount"] is True and found["hook_written"] is True and planted
    else:
        # a normal user's bubblewrap already runs without capabilities
        assert found["umount"] is False and found["hook_written"] is False and not planted
