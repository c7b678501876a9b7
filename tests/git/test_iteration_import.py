"""An iteration's commit on real repositories: its objects in the user's store, imported by a ref
update when nothing is missing there, by a fetch otherwise; the staged paths it reports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from outloop_cli.errors import GitError
from outloop_cli.git import rundirs
from outloop_cli.git.repo import Repository, discover
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.git.worktree import Identity, Worktree
from tests.conftest import RepoFactory, git

BRANCH = "outloop/fix/run-1"
WHO = Identity("agent via outloop", "agent@outloop.invalid")


def _run(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, Repository, RunGitDirs, Worktree]:
    repo = make_repo({"a.txt": "a\n", "src/b.py": "b = 1\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    user = Repository(discover(repo))
    user.create_branch(BRANCH, base)
    dirs = RunGitDirs(tmp_path / "run" / "git", tmp_path / "run" / "agent.git", tmp_path / "wt")
    rundirs.create(dirs, user_objects=repo / ".git" / "objects", branch=BRANCH, base=base)
    return repo, user, dirs, Worktree(dirs, BRANCH)


def _iteration(tree: Worktree, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tree.path / name).write_text(text)
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)
    return tree.commit(snapshot, "iteration\n", author=WHO, committer=WHO)


def _complete(repo: Path) -> bool:
    """git fsck of the user's repository alone: every object its refs reach is there."""
    done = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--connectivity-only", "--no-dangling"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def test_iteration_objects_are_written_into_the_user_store_and_imported_by_a_ref_update(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, user, dirs, tree = _run(make_repo, tmp_path)
    first = git(repo, "rev-parse", BRANCH).strip()

    sha = _iteration(tree, {"a.txt": "changed\n", "c.txt": "new\n"})

    assert tree.writes_only_to_user_store()
    assert user.import_commit(BRANCH, sha, first, complete=True)
    assert git(repo, "rev-parse", BRANCH).strip() == sha
    assert git(repo, "show", f"{sha}:c.txt") == "new\n"
    assert _complete(repo)
    # outloop's git dir kept nothing of its own
    assert not list((dirs.own / "objects").glob("??/*"))


def test_an_object_only_in_outloops_git_dir_sends_the_import_to_a_fetch(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, user, dirs, tree = _run(make_repo, tmp_path)
    first = git(repo, "rev-parse", BRANCH).strip()
    # written into outloop's own store behind its back (as the agent's copied commits are)
    subprocess.run(
        ["git", f"--git-dir={dirs.own}", "hash-object", "-w", "--stdin"],
        input=b"planted\n",
        check=True,
        capture_output=True,
    )
    sha = _iteration(tree, {"p.txt": "planted\n"})
    assert not tree.writes_only_to_user_store()

    # git finds the blob missing from the user's store: the ref is not moved
    assert not user.import_commit(BRANCH, sha, first)
    assert git(repo, "rev-parse", BRANCH).strip() == first
    assert _complete(repo)

    assert user.import_branch(dirs.own, BRANCH, sha) == sha
    assert git(repo, "rev-parse", BRANCH).strip() == sha
    assert _complete(repo)


def test_the_import_never_overwrites_a_branch_someone_else_moved(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, user, _dirs, tree = _run(make_repo, tmp_path)
    first = git(repo, "rev-parse", BRANCH).strip()
    sha = _iteration(tree, {"a.txt": "changed\n"})
    git(repo, "commit", "-q", "--allow-empty", "-m", "someone else's")
    git(repo, "branch", "-f", BRANCH, "HEAD")
    theirs = git(repo, "rev-parse", BRANCH).strip()

    with pytest.raises(GitError):
        user.import_commit(BRANCH, sha, first, complete=True)

    assert git(repo, "rev-parse", BRANCH).strip() == theirs


def test_a_branch_moved_behind_outloops_back_is_not_built_upon(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _repo, _user, dirs, tree = _run(make_repo, tmp_path)
    sha = _iteration(tree, {"a.txt": "one\n"})
    # someone with write access to outloop's git dir points the branch elsewhere
    planted = subprocess.run(
        ["git", f"--git-dir={dirs.own}", "commit-tree", "-m", "planted", f"{sha}^{{tree}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        ["git", f"--git-dir={dirs.own}", "update-ref", f"refs/heads/{BRANCH}", planted],
        check=True,
    )

    with pytest.raises(GitError):
        _iteration(tree, {"a.txt": "two\n"})


def test_the_changed_paths_are_exactly_those_whose_content_differs(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _repo, _user, dirs, tree = _run(make_repo, tmp_path)
    own_git = ["git", f"--git-dir={dirs.own}", f"--work-tree={dirs.work_tree}"]
    # worktree-only changes: the staged paths are the changed ones
    (tree.path / "a.txt").write_text("changed\n")
    (tree.path / "new.txt").write_text("new\n")
    (tree.path / "src" / "b.py").unlink()
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)
    assert sorted(snapshot.changed) == ["a.txt", "new.txt", "src/b.py"]
    tree.commit(snapshot, "one\n", author=WHO, committer=WHO)

    # staged, then changed back in the work tree: staging gives HEAD's entry again
    (tree.path / "a.txt").write_text("staged\n")
    subprocess.run([*own_git, "add", "a.txt"], check=True)
    (tree.path / "a.txt").write_text("changed\n")
    (tree.path / "c.txt").write_text("c\n")
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)
    assert snapshot.changed == ("c.txt",)

    # nothing really changed at all: an empty snapshot
    tree.commit(snapshot, "two\n", author=WHO, committer=WHO)
    (tree.path / "c.txt").write_text("c\n")
    assert tree.snapshot(tree.changes(), max_file_size=1 << 20).empty
