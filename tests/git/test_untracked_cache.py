"""The status outloop asks for twice an iteration reads no directory again when none changed.

outloop asks for every untracked file (``--untracked-files=all``). git keeps
its untracked cache for that mode only when ``status.showUntrackedFiles`` is
``all``; otherwise every status opens every directory of the work tree again.
git's own trace (``GIT_TRACE2_EVENT``, which outloop's git environment lets
through) counts the directories a status opened.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from outloop_cli.git import cli, reuse, rundirs
from outloop_cli.git.repo import Repository, discover
from outloop_cli.git.rundirs import RunGitDirs
from outloop_cli.git.worktree import Identity, Worktree
from tests.conftest import RepoFactory, git

BRANCH = "outloop/fix/run-1"


def _run_worktree(repo: Path, tmp_path: Path) -> tuple[RunGitDirs, str]:
    """A run's git dirs and work tree at the repository's HEAD, as a run makes them."""
    base = git(repo, "rev-parse", "HEAD").strip()
    Repository(discover(repo)).create_branch(BRANCH, base)
    dirs = RunGitDirs(tmp_path / "run" / "git", tmp_path / "run" / "agent.git", tmp_path / "wt")
    rundirs.create(dirs, user_objects=repo / ".git" / "objects", branch=BRANCH, base=base)
    return dirs, base


def _directory_stats(trace: Path) -> list[dict[str, int]]:
    """Per status, git's read_directory statistics (``opendir`` only when a cache is in use)."""
    stats: list[dict[str, int]] = []
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") != "data" or event.get("category") != "read_directory":
            continue
        if event["key"] == "path":
            stats.append({})
        else:
            stats[-1][event["key"]] = int(event["value"])
    return stats


def _statuses(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, int]]:
    files = {f"pkg{d}/mod{f}.py": f"x = {f}\n" for d in range(10) for f in range(5)}
    repo = make_repo(files)
    dirs, _base = _run_worktree(repo, tmp_path)
    tree = Worktree(dirs, BRANCH)
    trace = tmp_path / "trace.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    # the directory statistics sit three regions deep
    monkeypatch.setenv("GIT_TRACE2_EVENT_NESTING", "10")
    (tree.path / "pkg3" / "new.py").write_text("y = 1\n")
    # a directory changed within the index's own second is "racy": git reads it again
    # whatever its cache says, as for a file. A checkout older than a second is not.
    for directory in [tree.path, *(p for p in tree.path.rglob("*") if p.is_dir())]:
        os.utime(directory, (1_700_000_000, 1_700_000_000))
    for _ in range(3):
        assert [c.path for c in tree.changes()] == ["pkg3/new.py"]
    return _directory_stats(trace)


def test_a_second_status_opens_no_directory(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = _statuses(make_repo, tmp_path, monkeypatch)
    # the first fills the cache: the root and its ten packages; the others read none
    assert [s["opendir"] >= 11 for s in stats] == [True, False, False]
    assert [s["opendir"] for s in stats[1:]] == [0, 0]


def test_control_without_show_untracked_all_every_status_reads_every_directory(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolation = list(cli._ISOLATION)
    at = isolation.index("status.showUntrackedFiles=all")
    del isolation[at - 1 : at + 1]
    monkeypatch.setattr(cli, "_ISOLATION", tuple(isolation))
    stats = _statuses(make_repo, tmp_path, monkeypatch)
    assert len(stats) == 3
    # no cache in use (git counts opendir only for one), every directory visited each time
    assert all("opendir" not in s and s["directories-visited"] >= 11 for s in stats)


def test_an_iteration_commit_leaves_the_top_directory_as_it_was(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # outloop puts the agent's git on the new commit after each iteration; rewriting the
    # work tree's .git file then would change the top directory and cost the next status
    # a read of it (and a rewrite of the whole index)
    repo = make_repo({f"pkg{d}/mod.py": "x = 1\n" for d in range(10)})
    dirs, _base = _run_worktree(repo, tmp_path)
    tree = Worktree(dirs, BRANCH)
    (tree.path / "pkg3" / "mod.py").write_text("x = 2\n")
    for directory in [tree.path, *(p for p in tree.path.rglob("*") if p.is_dir())]:
        os.utime(directory, (1_700_000_000, 1_700_000_000))
    gitfile = (tree.path / ".git").stat()
    trace = tmp_path / "trace.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    monkeypatch.setenv("GIT_TRACE2_EVENT_NESTING", "10")
    who = Identity("agent via outloop", "agent@outloop.invalid")
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)
    tree.commit(snapshot, "iteration\n", author=who, committer=who)
    assert tree.changes() == []
    assert (tree.path / ".git").stat().st_ino == gitfile.st_ino
    assert (tree.path / ".git").read_text() == dirs.gitfile_text
    after_commit = _directory_stats(trace)[-1]
    assert after_commit["opendir"] == 0


def _finished_run_with_a_leftover(
    make_repo: RepoFactory, tmp_path: Path
) -> tuple[RunGitDirs, Path, str]:
    """A finished run's worktree whose untracked cache is filled, then an untracked file."""
    repo = make_repo({f"pkg{d}/mod.py": "x = 1\n" for d in range(3)})
    dirs, base = _run_worktree(repo, tmp_path)
    tree = Worktree(dirs, BRANCH)
    assert tree.changes() == []
    (tree.path / "leftover.txt").write_text("not committed\n")
    # looked at a while later, as by the next run: not within the index's own second,
    # which git would read again whatever its cache says
    time.sleep(1.1)
    # and every entry racily clean to git (an index older than its files), as a checkout
    # and its first status within one second leave them: the next status that may
    # writes the index anew
    os.utime(dirs.own / "index", (1_700_000_000, 1_700_000_000))
    return dirs, repo, base


def test_looking_at_a_worktree_for_reuse_leaves_its_index_and_status_as_they_were(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # `outloop clean` and every later look at the worktree ask for -uall status: a look
    # that stored its own kind of untracked cache in the index made them miss the file
    dirs, repo, base = _finished_run_with_a_leftover(make_repo, tmp_path)
    index = (dirs.own / "index").read_bytes()
    fresh = tmp_path / "fresh"
    rundirs.create(
        RunGitDirs(fresh / "git", fresh / "agent.git", tmp_path / "wt2"),
        user_objects=repo / ".git" / "objects",
        branch="outloop/fix/run-2",
        base=base,
    )  # fmt: skip

    for _ in range(2):
        why = reuse.unsafe_reason(dirs, BRANCH, base, fresh / "git", base, finished_at=0.0)
        assert why == "its worktree has 1 uncommitted or untracked path(s)"

    assert (dirs.own / "index").read_bytes() == index
    assert [c.path for c in Worktree(dirs, BRANCH).changes()] == ["leftover.txt"]


def test_control_the_same_status_allowed_to_write_the_index_hides_the_file(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # git 2.39 itself: twice the look without --no-optional-locks, and -uall misses it
    dirs, _repo, _base = _finished_run_with_a_leftover(make_repo, tmp_path)
    look = ("status", "--porcelain=v1", "-z", "--ignored=traditional", "--untracked-files=normal")
    for _ in range(2):
        assert dirs.git().run(*look, strip=False) == "?? leftover.txt\0"

    assert Worktree(dirs, BRANCH).changes() == []
