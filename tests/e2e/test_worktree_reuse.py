"""A new run takes a finished run's worktree over, only when that is safe, through the real CLI.

The agent of the second run writes down everything it sees in its worktree
(path, content hash, mode) before it works: that must be exactly the new
base's tree, nothing the first run's agent left (an ignored build output, an
ignored cache directory, its committed files that the base lacks). When the
old worktree is dirty, locked, in use or odd, the new run checks out afresh,
the old worktree is left as it was, and run.json says why.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import PY, run_cli, run_cli_patched, runs_dir, shared_dir

# Writes DIR/<n>.json (everything in the worktree but .git: hash and mode), then
# leaves what an agent leaves: a committed file, an ignored build output, an ignored
# cache directory. counter.txt makes the goal hold after one turn.
AGENT = r"""
import hashlib, json, os, pathlib, stat, sys
out = pathlib.Path(sys.argv[1])
seen = {}
for root, dirs, files in os.walk("."):
    dirs[:] = [d for d in dirs if not (root == "." and d == ".git")]
    for name in files:
        if root == "." and name == ".git":
            continue
        p = pathlib.Path(root, name)
        info = p.lstat()
        body = os.readlink(p).encode() if stat.S_ISLNK(info.st_mode) else p.read_bytes()
        seen[str(p)] = [hashlib.sha256(body).hexdigest(), oct(stat.S_IMODE(info.st_mode))]
    for name in dirs:
        seen[str(pathlib.Path(root, name)) + "/"] = ["dir", ""]
n = len(list(out.glob("*.json"))) + 1
(out / f"{n}.json").write_text(json.dumps(seen, sort_keys=True))
pathlib.Path("counter.txt").write_text("1\n")
pathlib.Path("build").mkdir(exist_ok=True)
pathlib.Path("build/out.o").write_bytes(b"object code")
pathlib.Path(".cache/deep/er").mkdir(parents=True, exist_ok=True)
pathlib.Path(".cache/deep/er/blob").write_text("cached")
pathlib.Path("src/generated.log").write_text("ignored by *.log")
if (out / "edit-readme").exists():
    with open("README.md", "a") as readme:
        readme.write("written by the next agent\n")
"""


def _goal(shared: Path) -> str:
    """Met once counter.txt is there, unless the test holds it open (DIR/hold)."""
    code = (
        "import pathlib,sys; "
        f"sys.exit(0 if pathlib.Path('counter.txt').exists() and not pathlib.Path({str(shared / 'hold')!r}).exists() else 1)"
    )
    return f'{PY} -c "{code}"'


def _loop(shared: Path, sandbox: dict[str, Any]) -> str:
    data = {
        "description": "reuse test loop",
        "agent": {
            "preset": "command",
            "command": [PY, str(shared / "agent.py"), str(shared)],
            "prompt": "Write the counter.",
            "timeout": "60s",
        },
        "goal": {"run": _goal(shared), "timeout": "60s"},
        "limits": {"max_iterations": 2, "stall": 3},
        "sandbox": sandbox,
    }
    return json.dumps(data)


def _repo(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, Path]:
    shared, sandbox = shared_dir(tmp_path)
    (shared / "agent.py").write_text(AGENT)
    files = {
        ".gitignore": "build/\n.cache/\n*.log\n",
        "README.md": "a project\n",
        "src/app.py": "print('hi')\n",
        "src/old.py": "old = True\n",
        "tools/run.sh": "#!/bin/sh\necho run\n",
        ".outloop/fix.yml": _loop(shared, sandbox),
    }
    repo = make_repo(files)
    (repo / "tools" / "run.sh").chmod(0o755)
    git(repo, "add", "tools/run.sh")
    git(repo, "commit", "-q", "-m", "executable")
    return repo, shared


def _run(repo: Path, *args: str, code: int = 0, patch: str = "") -> dict[str, Any]:
    argv = ("run", "fix", "--json", *args)
    done = run_cli_patched(repo, patch, *argv) if patch else run_cli(repo, *argv)
    assert done.returncode == code, done.stdout + done.stderr
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    return _record(repo, run_id)


def _record(repo: Path, run_id: str) -> dict[str, Any]:
    return dict(json.loads((runs_dir(repo) / run_id / "run.json").read_text()))


def _new_base(repo: Path) -> str:
    """The user moves main on: one file changed, one deleted, one added."""
    (repo / "src" / "app.py").write_text("print('hello')\n")
    git(repo, "rm", "-q", "src/old.py")
    (repo / "docs").mkdir()
    (repo / "docs" / "new.md").write_text("new\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "moved on")
    return git(repo, "rev-parse", "HEAD").strip()


def _tree_as_checked_out(repo: Path, commit: str) -> dict[str, list[str]]:
    """What a fresh checkout of ``commit`` holds, in the agent's listing's format."""
    umask = os.umask(0)
    os.umask(umask)
    expected: dict[str, list[str]] = {}
    listing = git(repo, "ls-tree", "-r", "-t", "-z", commit)
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split(" ")
        if kind == "tree":
            expected[path + "/"] = ["dir", ""]
            continue
        body = subprocess.run(
            ["git", "cat-file", "blob", sha], cwd=repo, capture_output=True, check=True
        ).stdout
        perm = (0o777 if mode == "100755" else 0o666) & ~umask
        expected[path] = [hashlib.sha256(body).hexdigest(), oct(perm)]
    return expected


def _seen(shared: Path, n: int) -> dict[str, list[str]]:
    return dict(json.loads((shared / f"{n}.json").read_text()))


def test_second_run_takes_the_finished_worktree_and_sees_exactly_the_new_base(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, shared = _repo(make_repo, tmp_path)
    first = _run(repo)
    assert first["worktree_origin"] == {
        "reused_from": None,
        "files_checked_out": None,
        "skipped": {},
    }
    old_worktree = Path(first["worktree"])
    # the first agent's leftovers are there, ignored, after its run finished
    assert (old_worktree / "build" / "out.o").is_file()
    assert (old_worktree / ".cache" / "deep" / "er" / "blob").is_file()
    base = _new_base(repo)

    second = _run(repo)

    origin = second["worktree_origin"]
    assert origin["reused_from"] == first["run_id"]
    # counter.txt (the first run's commit) went, app.py changed, old.py went, new.md came
    changed = git(repo, "diff", "--name-only", first["branch"], base).split()
    assert origin["files_checked_out"] == len(changed) == 4
    assert second["base_commit"] == base
    # the agent saw the base's tree, byte for byte and mode for mode, and nothing else
    assert _seen(shared, 2) == _tree_as_checked_out(repo, base)
    # the worktree moved: the old path is gone, the new run's is named after it
    assert not old_worktree.exists()
    assert Path(second["worktree"]).name == second["run_id"]
    audit = [
        json.loads(line)
        for line in (runs_dir(repo) / second["run_id"] / "audit.jsonl").read_text().splitlines()
    ]
    (event,) = [e for e in audit if e["event"] == "worktree"]
    assert event["reused_from"] == first["run_id"]
    assert run_cli(repo, "audit", "verify", second["run_id"]).returncode == 0

    # the old run's records and branch are intact: show works, its branch still has its commit
    shown = run_cli(repo, "show", first["run_id"])
    assert shown.returncode == 0, shown.stderr
    assert first["run_id"] in shown.stdout
    assert "(removed)" in shown.stdout
    shown = run_cli(repo, "show", second["run_id"])
    assert f"(taken over from run {first['run_id']})" in shown.stdout
    assert git(repo, "show", f"{first['branch']}:counter.txt") == "1\n"


def test_the_old_run_resumes_into_a_fresh_checkout_of_its_own_branch(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, shared = _repo(make_repo, tmp_path)
    # the first run ends with its goal not met, so there is something to resume
    (shared / "hold").write_text("")
    first = _run(repo, "--max-iterations", "1", code=1)
    assert first["stop_reason"] == "max_iterations"
    (shared / "hold").unlink()
    _new_base(repo)
    second = _run(repo)
    assert second["worktree_origin"]["reused_from"] == first["run_id"]

    done = run_cli(repo, "resume", first["run_id"], "--max-iterations", "2", "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    resumed = _record(repo, first["run_id"])
    assert resumed["state"] == "finished"
    assert resumed["stop_reason"] == "goal_met"
    assert [it["n"] for it in resumed["iterations"]] == [0, 1, 2]
    old_worktree = Path(first["worktree"])
    # its own branch's files, checked out again where its record says
    assert (old_worktree / "counter.txt").read_text() == "1\n"
    assert (old_worktree / "src" / "old.py").is_file()
    assert not (old_worktree / "docs").exists()
    # and the second run's worktree was not touched by that
    assert (Path(second["worktree"]) / "docs" / "new.md").is_file()
    assert not (Path(second["worktree"]) / "src" / "old.py").exists()


def _dirty_untracked(worktree: Path, _own: Path) -> str:
    (worktree / "my-notes.txt").write_text("the user's notes\n")
    return "uncommitted or untracked"


def _dirty_tracked(worktree: Path, _own: Path) -> str:
    (worktree / "README.md").write_text("edited by hand\n")
    return "uncommitted or untracked"


def _index_flag(worktree: Path, own: Path) -> str:
    # an edit git is told not to look at: git status alone would call this worktree clean
    (worktree / "README.md").write_text("hidden edit\n")
    subprocess.run(
        ["git", f"--git-dir={own}", f"--work-tree={worktree}", "update-index",
         "--assume-unchanged", "README.md"],
        check=True, cwd=worktree,
    )  # fmt: skip
    return "assume-unchanged"


def _index_locked(_worktree: Path, own: Path) -> str:
    (own / "index.lock").write_text("")
    return "index.lock"


def _hard_link(worktree: Path, _own: Path) -> str:
    # a tracked file, unchanged in content, linked to a file outside the worktree
    outside = worktree.parent.parent / "outside.md"
    outside.write_text((worktree / "README.md").read_text())
    (worktree / "README.md").unlink()
    os.link(outside, worktree / "README.md")
    return "moving it failed"


def _info_exclude(worktree: Path, own: Path) -> str:
    # an exclude file in outloop's git dir would hide the user's file from git status
    (own / "info").mkdir()
    (own / "info" / "exclude").write_text("precious.txt\n")
    (worktree / "precious.txt").write_text("keep me\n")
    return "info"


def _ignored_after_finish(worktree: Path, _own: Path) -> str:
    # ignored, but the user's, put there after the run ended: git clean would delete it
    (worktree / "local.log").write_text("the user's own log\n")
    later = time.time() + 5
    os.utime(worktree / "local.log", (later, later))
    return "changed after the run finished"


@pytest.mark.parametrize(
    "spoil",
    [
        _dirty_untracked,
        _dirty_tracked,
        _index_flag,
        _index_locked,
        _hard_link,
        _info_exclude,
        _ignored_after_finish,
    ],
)
def test_an_unsafe_worktree_is_not_taken_and_the_new_run_checks_out_afresh(
    make_repo: RepoFactory, tmp_path: Path, spoil: Any
) -> None:
    repo, shared = _repo(make_repo, tmp_path)
    first = _run(repo)
    old_worktree = Path(first["worktree"])
    own = runs_dir(repo) / first["run_id"] / "git"
    why = spoil(old_worktree, own)
    before = _snapshot(old_worktree)
    base = _new_base(repo)

    second = _run(repo)

    origin = second["worktree_origin"]
    assert origin["reused_from"] is None
    assert why in origin["skipped"][first["run_id"]]
    assert _seen(shared, 2) == _tree_as_checked_out(repo, base)
    if why != "moving it failed":
        # left exactly as it was, the user's work in it included
        assert _snapshot(old_worktree) == before


def test_a_worktree_someone_works_in_or_whose_run_is_held_is_not_taken(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, _shared = _repo(make_repo, tmp_path)
    first = _run(repo)
    second = _run(repo)
    assert second["worktree_origin"]["reused_from"] == first["run_id"]
    # a shell left in the second run's worktree; the first run's worktree is gone (taken)
    with _shell_in(second["worktree"]) as shell:
        third = _run(repo)
    assert third["worktree_origin"]["reused_from"] is None
    assert third["worktree_origin"]["skipped"][second["run_id"]] == (
        f"process {shell.pid} works in it"
    )
    # a run whose lock another process holds (a resume starting, `outloop clean`)
    lock = runs_dir(repo) / third["run_id"] / "lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # one candidate only: a held run (as one running alongside) does not use it up
        fourth = _run(repo, patch=ONE_CANDIDATE)
    finally:
        os.close(fd)
    skipped = fourth["worktree_origin"]["skipped"]
    assert skipped[third["run_id"]] == "another process holds its lock"
    # the next candidate, the second run's worktree, was free again by then
    assert fourth["worktree_origin"]["reused_from"] == second["run_id"]


ONE_CANDIDATE = "from outloop_cli.engine import worktree_reuse\nworktree_reuse.MAX_CANDIDATES = 1\n"


@contextmanager
def _shell_in(worktree: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process left working in ``worktree`` (a user's shell) while the block runs."""
    shell = subprocess.Popen(["sleep", "300"], cwd=worktree)
    try:
        yield shell
    finally:
        shell.kill()
        shell.wait()


def test_the_run_that_finished_last_is_asked_first_whatever_its_id(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # Run ids sort by the second a run started, then by a random suffix: two runs
    # started within one second sort either way. Which worktree is asked first must
    # follow when each run finished, told here by its record's time.
    repo, _shared = _repo(make_repo, tmp_path)
    first = _run(repo)
    with _shell_in(first["worktree"]):
        second = _run(repo)
    assert second["worktree_origin"]["reused_from"] is None
    # both worktrees are free now; the first run's record says it ended last
    first_record = runs_dir(repo) / first["run_id"] / "run.json"
    later = (runs_dir(repo) / second["run_id"] / "run.json").stat().st_mtime_ns + 10**9
    os.utime(first_record, ns=(later, later))
    third = _run(repo)
    assert third["worktree_origin"]["reused_from"] == first["run_id"]
    assert second["run_id"] not in third["worktree_origin"]["skipped"]


def _snapshot(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_eight_loops_at_once_all_run_their_turns_together_and_finish(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # each agent waits until all eight have started: if anything in outloop made one
    # run wait for another (a lock around starting processes, a shared file), some
    # agent would run alone and say so
    from tests.support.e2e import agent_cmd, counter_goal, loop_yaml

    # not right below tmp_path: `python -m` from there puts it first on outloop's sys.path,
    # and a writable directory right below a sys.path entry is refused
    (tmp_path / "area").mkdir()
    shared, sandbox = shared_dir(tmp_path / "area", "rendezvous")
    names = [f"r{k}" for k in range(8)]
    repos = [
        make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("rendezvous_agent.py", str(shared), name, "8"),
                    counter_goal(1),
                    sandbox=sandbox,
                )
            },
            name=name,
        )
        for name in names
    ]
    args = [arg for repo in repos for arg in ("--repo", str(repo))]

    done = run_cli(tmp_path, "run", "fix", *args, "--jobs", "8", "--json", timeout=300)

    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["stop_reason"] for row in rows] == ["goal_met"] * 8
    for name in names:
        assert (shared / f"{name}.end").read_text().split()[1] == "met", name


# the control: the fresh-checkout check (owner, modes, hard links) taken out of the run
NO_FRESH_CHECK = (
    "from outloop_cli.git import reuse\nreuse.unlike_fresh_checkout = lambda root: None\n"
)


@pytest.mark.parametrize("patch", ["", NO_FRESH_CHECK], ids=["checked", "control"])
def test_a_hard_link_left_in_a_worktree_does_not_let_the_next_agent_write_outside(
    make_repo: RepoFactory, tmp_path: Path, patch: str
) -> None:
    # the first run's worktree keeps README.md linked to a file outside it (a clean tree
    # to git: same content); the next run's agent edits README.md
    repo, shared = _repo(make_repo, tmp_path)
    first = _run(repo)
    old_worktree = Path(first["worktree"])
    outside = old_worktree.parent.parent / "outside.md"
    _hard_link(old_worktree, Path())
    _new_base(repo)
    (shared / "edit-readme").write_text("")

    second = _run(repo, patch=patch)

    written = "written by the next agent" in outside.read_text()
    if patch:
        # without the check the tree is taken over, and the agent wrote through the link
        assert second["worktree_origin"]["reused_from"] == first["run_id"]
        assert written
    else:
        assert second["worktree_origin"]["reused_from"] is None
        # refused by the check, after the move: the rest of the look found it clean
        assert "moving it failed" in second["worktree_origin"]["skipped"][first["run_id"]]
        assert not written
