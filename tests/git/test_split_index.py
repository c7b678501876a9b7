"""The run's index is split (``core.splitIndex``): each write of it is what changed, and the
agent's git, which reads a copy of it, always has the shared part that copy names."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outloop_cli.git import rundirs, worktree
from outloop_cli.git.repo import Repository, discover
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.git.worktree import Identity, Worktree
from tests.conftest import RepoFactory, git

BRANCH = "outloop/fix/run-1"
WHO = Identity("agent via outloop", "agent@outloop.invalid")
FILES = 400


@pytest.fixture(autouse=True)
def _split_anew_sooner(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real threshold is 2000 entries: a repository of that size costs every test here
    monkeypatch.setattr(worktree, "_RESPLIT_ENTRIES", 50)


def _run(make_repo: RepoFactory, tmp_path: Path) -> tuple[RunGitDirs, Worktree]:
    repo = make_repo({f"d{i % 20}/f{i}.txt": f"{i}\n" for i in range(FILES)})
    base = git(repo, "rev-parse", "HEAD").strip()
    Repository(discover(repo)).create_branch(BRANCH, base)
    dirs = RunGitDirs(tmp_path / "run" / "git", tmp_path / "run" / "agent.git", tmp_path / "wt")
    rundirs.create(dirs, user_objects=repo / ".git" / "objects", branch=BRANCH, base=base)
    return dirs, Worktree(dirs, BRANCH)


def _iteration(tree: Worktree, changed: range) -> str:
    for i in changed:
        (tree.path / f"d{i % 20}" / f"f{i}.txt").write_text(f"{i} changed\n")
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)
    return tree.commit(snapshot, "iteration\n", author=WHO, committer=WHO)


def _shared(git_dir: Path) -> set[str]:
    return {p.name for p in git_dir.glob("sharedindex.*")}


def _current(dirs: RunGitDirs) -> str:
    """The shared part outloop's index names (earlier ones stay until git expires them)."""
    name = rundirs.named_shared_index(dirs.own)
    assert name is not None
    return name


def test_an_iteration_writes_only_the_entries_that_changed(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    """After the checkout every entry is refreshed once: the index is split anew then."""
    dirs, tree = _run(make_repo, tmp_path)
    # past the checkout's second: git compares timestamps to the second, and an index
    # written in the second its files were is written with them "racily clean" again
    time.sleep(1.1)
    for n in range(3):
        _iteration(tree, range(n, n + 2))
        counts = rundirs.split_index_entries(dirs.own)
        assert counts is not None
        own, shared = counts
        assert shared == FILES and own <= 6, counts
    name = _current(dirs)
    assert (dirs.own / "index").stat().st_size * 4 < (dirs.own / name).stat().st_size
    own_git = [f"--git-dir={dirs.own}", f"--work-tree={dirs.work_tree}"]
    assert len(git(dirs.work_tree, *own_git, "ls-files").split()) == FILES
    assert git(dirs.work_tree, *own_git, "status", "--porcelain") == ""


def test_the_agents_git_reads_its_copy_with_the_shared_part_it_names(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    dirs, tree = _run(make_repo, tmp_path)
    # the checkout's index is whole (a new index version drops the split); the first
    # write after it splits it
    _iteration(tree, range(2))
    assert _shared(dirs.agent) == {_current(dirs)}
    # more than a fifth of the entries changed: a new shared part, the old one gone
    before = _current(dirs)
    _iteration(tree, range(FILES // 2))
    after = _current(dirs)
    assert after != before
    # the agent's git dir has the one its copy of the index names, and no other
    assert _shared(dirs.agent) == {after}
    # the agent's git, through the work tree's .git file: the same files, nothing changed
    assert len(git(dirs.work_tree, "ls-files").split()) == FILES
    assert git(dirs.work_tree, "status", "--porcelain") == ""


def test_a_link_planted_in_the_agents_git_dir_is_replaced_not_followed(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    dirs, tree = _run(make_repo, tmp_path)
    _iteration(tree, range(FILES // 2))
    name = _current(dirs)
    outside = tmp_path / "outside"
    outside.write_text("the user's file\n")
    (dirs.agent / name).unlink()
    (dirs.agent / name).symlink_to(outside)
    (dirs.agent / "sharedindex.0000000000000000000000000000000000000000").mkdir()

    rundirs.sync_agent(dirs, BRANCH, tree.head())

    assert outside.read_text() == "the user's file\n"
    assert not (dirs.agent / name).is_symlink()
    assert (dirs.agent / name).read_bytes() == (dirs.own / name).read_bytes()
    assert _shared(dirs.agent) == {name}
    assert git(dirs.work_tree, "status", "--porcelain") == ""


def test_a_copy_cut_short_or_a_locked_directory_in_its_place_is_mended(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    """The agent may leave its git dir in any state: the next sync still gives its git a whole
    shared part, and removes what is in the way even where the agent took write permission."""
    dirs, tree = _run(make_repo, tmp_path)
    _iteration(tree, range(FILES // 2))
    name = _current(dirs)
    copy = dirs.agent / name
    copy.write_bytes(copy.read_bytes()[:100])
    stale = dirs.agent / "sharedindex.0000000000000000000000000000000000000000"
    (stale / "locked").mkdir(parents=True)
    (stale / "locked" / "file").write_text("x")
    (stale / "locked").chmod(0o500)

    rundirs.sync_agent(dirs, BRANCH, tree.head())

    assert copy.read_bytes() == (dirs.own / name).read_bytes()
    assert not stale.exists()
    assert git(dirs.work_tree, "status", "--porcelain") == ""
