"""outloop moves its own branch without a git process: what git's ``update-ref`` would do
(lock, check, rename, reflog), read back by git itself, and git's move where a ref is not a
plain loose file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from outloop_cli.errors import GitError
from outloop_cli.git import rundirs
from tests.conftest import RepoFactory
from tests.git.test_iteration_import import BRANCH, WHO, _iteration, _run


def _own(dirs: rundirs.RunGitDirs, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={dirs.own}", *args], capture_output=True, text=True, check=True
    ).stdout


def test_each_iteration_moves_the_branch_as_git_would(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _repo, _user, dirs, tree = _run(make_repo, tmp_path)
    base = _own(dirs, "rev-parse", BRANCH).strip()
    shas = [_iteration(tree, {"a.txt": f"{n}\n"}) for n in range(3)]

    assert _own(dirs, "rev-parse", BRANCH).strip() == shas[-1]
    assert _own(dirs, "rev-list", "--first-parent", BRANCH).split() == [*reversed(shas), base]
    # git's own reader of reflogs finds every move, with who made it and why
    log = _own(dirs, "reflog", "show", "--format=%H %gn <%ge> %gs", BRANCH).splitlines()
    assert log[:3] == [
        f"{sha} {WHO.name} <{WHO.email}> outloop: iteration" for sha in reversed(shas)
    ]
    # HEAD points at the branch: its log has each move too, as git update-ref writes it
    head_log = _own(dirs, "reflog", "show", "--format=%H %gs", "HEAD").splitlines()
    assert head_log[:3] == [f"{sha} outloop: iteration" for sha in reversed(shas)]
    assert not list(dirs.own.rglob("*.lock"))
    fsck = subprocess.run(
        ["git", f"--git-dir={dirs.own}", "fsck", "--no-dangling"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fsck.returncode == 0, fsck.stderr


def test_a_branch_that_moved_is_not_moved_again(make_repo: RepoFactory, tmp_path: Path) -> None:
    _repo, _user, dirs, tree = _run(make_repo, tmp_path)
    first = _iteration(tree, {"a.txt": "one\n"})
    elsewhere = _own(dirs, "commit-tree", "-m", "elsewhere", f"{first}^{{tree}}").strip()
    with pytest.raises(GitError, match="expected"):
        rundirs.move_own_branch(dirs, BRANCH, elsewhere, "0" * 40, who=("a", "b"), message="m")
    assert _own(dirs, "rev-parse", BRANCH).strip() == first
    assert not list(dirs.own.rglob("*.lock"))


def test_a_lock_someone_else_holds_is_left_to_them(make_repo: RepoFactory, tmp_path: Path) -> None:
    _repo, _user, dirs, tree = _run(make_repo, tmp_path)
    first = _iteration(tree, {"a.txt": "one\n"})
    lock = dirs.own / "refs" / "heads" / f"{BRANCH}.lock"
    lock.write_text("theirs\n")
    with pytest.raises(GitError, match="File exists"):
        _iteration(tree, {"a.txt": "two\n"})
    assert lock.read_text() == "theirs\n"
    assert _own(dirs, "rev-parse", BRANCH).strip() == first


def test_a_packed_branch_is_moved_by_git(make_repo: RepoFactory, tmp_path: Path) -> None:
    _repo, _user, dirs, tree = _run(make_repo, tmp_path)
    first = _iteration(tree, {"a.txt": "one\n"})
    _own(dirs, "pack-refs", "--all")
    assert not (dirs.own / "refs" / "heads" / BRANCH).exists()
    assert not rundirs.move_own_branch(dirs, BRANCH, first, first, who=("a", "b"), message="m")

    second = _iteration(tree, {"a.txt": "two\n"})

    assert _own(dirs, "rev-parse", BRANCH).strip() == second
    assert _own(dirs, "rev-parse", f"{second}^").strip() == first
