"""The user's repository is out of the agent's reach: it works in a private git dir.

The agent of a real run under ``sandbox: bwrap`` tries to change the user's
repository: move and delete branches and tags, drop the stash, expire the
reflogs and prune the unpushed work they kept, add an alternate and an
attributes file, and plant a hook and an fsmonitor in a submodule's git dir.
Its git is the private git dir of its run; the sandbox shows the user's
object store read-only and nothing else of the user's git dir writable, so
every one of them fails and the repository is as it was. The control runs
the same agent in a sandbox that binds the user's git dir writable (what the
agent's git needed before it had a git dir of its own): every attack lands.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from outloop_cli.sandbox.bwrap import GitMounts, bwrap_program, wrap
from tests.conftest import RepoFactory, git
from tests.support.e2e import AGENTS, PY, agent_cmd, loop_yaml, only_run, run_cli, runs_dir

ATTACKS = (
    "move_branch",
    "delete_branch",
    "move_tag",
    "drop_stash",
    "expire_reflogs",
    "prune",
    "alternates",
    "attributes",
    "submodule_hook",
    "submodule_config",
)


def _user_repo(make_repo: RepoFactory, loop: str | None = None) -> Path:
    files = {"a.txt": "a\n"}
    if loop is not None:
        files[".outloop/fix.yml"] = loop
    repo = make_repo(files)
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "f.txt").write_text("feature work\n")
    git(repo, "add", "f.txt")
    git(repo, "commit", "-qm", "unpushed feature work")
    git(repo, "tag", "v1")
    git(repo, "checkout", "-q", "main")
    (repo / "a.txt").write_text("work in progress\n")
    git(repo, "stash", "-q")
    # a submodule's git dir, as `git submodule update` leaves it
    modules = repo / ".git" / "modules" / "sub"
    (modules / "hooks").mkdir(parents=True)
    (modules / "config").write_text("[core]\n\tbare = false\n")
    return repo


def _state(repo: Path) -> dict[str, Any]:
    """What of the user's repository the attacks aim at, outloop's own run refs aside."""
    gitdir = repo / ".git"
    refs = [
        line
        for line in git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
        if not line.startswith("refs/heads/outloop/")
    ]
    files = {}
    for top in ("logs", "modules", "info", "objects/info"):
        for path in sorted((gitdir / top).rglob("*")):
            rel = path.relative_to(gitdir).as_posix()
            if path.is_file() and "/outloop/" not in f"/{rel}":
                files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    stash = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "refs/stash"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "refs": refs,
        "files": files,
        "stash_object": bool(stash)
        and subprocess.run(["git", "cat-file", "-e", stash], cwd=repo).returncode == 0,
    }


def _report(text: str) -> dict[str, bool]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    return dict(json.loads(lines[-1]))


def test_the_agent_of_a_sandboxed_run_cannot_touch_the_users_repository(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    loop = loop_yaml(
        agent_cmd("gitdir_attack_agent.py"),
        "false",
        sandbox="bwrap",
        limits={"max_iterations": 1},
    )
    repo = _user_repo(make_repo, loop)
    before = _state(repo)

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "max_iterations", record["stop_detail"]
    log = runs_dir(repo) / str(record["run_id"]) / "logs" / "iter-001-agent.log"
    found = _report(log.read_text())
    assert set(found) == set(ATTACKS)
    # git itself refuses every change to refs, reflogs and objects...
    assert not any(found[k] for k in ATTACKS[:6]), found
    # ...and a file written "into" the repository lands in the sandbox's own /tmp at best
    assert _state(repo) == before
    # and the run's own branch came in the only way there is: imported by outloop
    assert git(repo, "rev-parse", "--verify", record["branch"]).strip()


def test_control_with_the_users_git_dir_writable_every_attack_lands(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = _user_repo(make_repo)
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "scratch", str(worktree))
    before = _state(repo)
    view = wrap(
        [PY, str(AGENTS / "gitdir_attack_agent.py")],
        bwrap=bwrap_program(os.environ.get("PATH")),
        worktree=worktree,
        git=GitMounts((), repo / ".git"),
        path_env=os.environ.get("PATH"),
    )

    done = subprocess.run(view, cwd=worktree, capture_output=True, text=True, timeout=60)

    found = _report(done.stdout)
    assert all(found.values()), found
    after = _state(repo)
    assert after["refs"] != before["refs"]
    assert not after["stash_object"]
    changed = {
        k
        for k in {*before["files"], *after["files"]}
        if before["files"].get(k) != after["files"].get(k)
    }
    assert {
        "objects/info/alternates",
        "info/attributes",
        "modules/sub/hooks/post-checkout",
        "modules/sub/config",
    } <= changed
    assert any(k.startswith("logs/") for k in changed)
