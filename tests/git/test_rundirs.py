"""A run's own git dirs on real repositories: what outloop's git reads, and what the agent's may do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from outloop_cli.errors import GitError
from outloop_cli.git import rundirs
from outloop_cli.git.repo import Repository, discover
from outloop_cli.git.rundirs import RunGitDirs, UnsafeGitDir
from outloop_cli.git.worktree import Identity, Worktree
from tests.conftest import RepoFactory, git

BRANCH = "outloop/fix/run-1"
WHO = Identity("agent via outloop", "agent@outloop.invalid")


def _run(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, RunGitDirs, Worktree]:
    repo = make_repo({"a.txt": "a\n", "src/b.py": "b = 1\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    Repository(discover(repo)).create_branch(BRANCH, base)
    dirs = RunGitDirs(tmp_path / "run" / "git", tmp_path / "run" / "agent.git", tmp_path / "wt")
    rundirs.create(
        dirs,
        user_objects=repo / ".git" / "objects",
        branch=BRANCH,
        base=base,
        identity=("agent via outloop", "agent@outloop.invalid"),
    )
    return repo, dirs, Worktree(dirs, BRANCH)


def _agent_git(dirs: RunGitDirs, *args: str) -> str:
    """git as the agent runs it in the work tree: found through the .git file."""
    return git(dirs.work_tree, *args)


def test_the_work_tree_is_checked_out_and_the_agents_git_works_there(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, dirs, tree = _run(make_repo, tmp_path)

    assert (dirs.work_tree / "src" / "b.py").read_text() == "b = 1\n"
    assert (dirs.work_tree / ".git").read_text() == f"gitdir: {dirs.agent}\n"
    # the agent's git: log, status, blame and a commit of its own, on its own branch
    assert _agent_git(dirs, "status", "--porcelain") == ""
    assert "initial" in _agent_git(dirs, "log", "--oneline")
    assert "b = 1" in _agent_git(dirs, "blame", "src/b.py")
    (dirs.work_tree / "c.txt").write_text("c\n")
    _agent_git(dirs, "add", "c.txt")
    _agent_git(dirs, "commit", "-qm", "agent's own")
    assert _agent_git(dirs, "log", "-1", "--format=%an").strip() == "agent via outloop"
    # none of it is in the user's repository, nor in outloop's git dir yet
    assert git(repo, "rev-parse", BRANCH) == git(repo, "rev-parse", "main")
    assert tree.head() == git(repo, "rev-parse", "main").strip()


def test_outloops_git_reads_neither_the_gitfile_nor_any_config_but_its_own(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _repo, dirs, tree = _run(make_repo, tmp_path)
    marker = tmp_path / "pwned"
    planted = f"sh -c 'echo pwned >> {marker}; cat'"
    # the agent's own config, the user's global config, and a git dir of the agent's
    _agent_git(dirs, "config", "filter.evil.clean", planted)
    _agent_git(dirs, "config", "core.fsmonitor", f"sh -c 'echo pwned >> {marker}'")
    with (Path(os.environ["HOME"]) / ".gitconfig").open("a") as handle:
        handle.write(f'[filter "evil"]\n\tclean = {planted}\n')
    evil = tmp_path / "evil"
    git(tmp_path, "init", "-q", str(evil))
    git(evil, "config", "filter.evil.clean", planted)
    (dirs.work_tree / ".gitattributes").write_text("* filter=evil\n")
    (dirs.work_tree / ".git").write_text(f"gitdir: {evil / '.git'}\n")
    (dirs.work_tree / "a.txt").write_text("changed\n")

    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20)
    sha = tree.commit(snapshot, "iteration\n", author=WHO, committer=WHO)

    assert not marker.exists()
    assert set(snapshot.changed) == {".gitattributes", "a.txt"}
    # the content went in as it is: no filter touched it
    assert git(dirs.own, "--git-dir", str(dirs.own), "show", f"{sha}:a.txt") == "changed\n"
    # and the commit put the agent's git back on outloop's branch and link
    assert (dirs.work_tree / ".git").read_text() == f"gitdir: {dirs.agent}\n"
    assert rundirs.agent_head(dirs, BRANCH) == sha
    assert _agent_git(dirs, "status", "--porcelain") == ""


def test_the_agents_commits_are_copied_in_and_a_commit_goes_on_top(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, dirs, tree = _run(make_repo, tmp_path)
    (dirs.work_tree / "one.txt").write_text("1\n")
    _agent_git(dirs, "add", "one.txt")
    _agent_git(dirs, "commit", "-qm", "one")
    (dirs.work_tree / "two.txt").write_text("2\n")

    commits = tree.agent_commits()
    [only] = commits
    files = dict(tree.commit_files(only))
    snapshot = tree.snapshot(tree.changes(), max_file_size=1 << 20, parent=only)
    sha = tree.commit(snapshot, "iteration\n", author=WHO, committer=WHO)
    head = Repository(discover(repo)).import_branch(dirs.own, BRANCH)

    assert files == {"one.txt": b"1\n"}
    assert b"\n\none\n" in tree.commit_message_of(only)
    # counted against outloop's last commit: both files are this turn's work
    assert set(snapshot.changed) == {"one.txt", "two.txt"}
    assert head == sha
    assert git(repo, "log", "--format=%s", BRANCH).split("\n")[:2] == ["iteration", "one"]
    # the user's repository now holds the objects itself: the agent's git dir can go
    subprocess.run(["rm", "-rf", str(dirs.agent)], check=True)
    assert git(repo, "fsck", "--no-dangling").strip() == ""


def test_a_branch_the_agent_reset_or_left_gives_no_commits(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _repo, dirs, tree = _run(make_repo, tmp_path)
    _agent_git(dirs, "checkout", "-q", "-b", "elsewhere")
    (dirs.work_tree / "x.txt").write_text("x\n")
    _agent_git(dirs, "add", "x.txt")
    _agent_git(dirs, "commit", "-qm", "elsewhere")
    assert tree.agent_commits() == []
    _agent_git(dirs, "checkout", "-q", BRANCH)
    # an unrelated history on the run's branch is not built on either
    _agent_git(dirs, "checkout", "-q", "--orphan", "fresh")
    _agent_git(dirs, "commit", "-qm", "root of its own")
    _agent_git(dirs, "branch", "-f", "-M", BRANCH)
    assert rundirs.agent_head(dirs, BRANCH) is not None
    assert tree.agent_commits() == []


def test_writing_the_agents_git_dir_never_follows_a_link(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    _repo, dirs, tree = _run(make_repo, tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine\n")
    heads = dirs.agent / "refs" / "heads"
    # the branch's file turned into a link to the victim's file
    target = dirs.agent / "refs" / "heads" / BRANCH
    target.unlink()
    target.symlink_to(victim / "keep")
    rundirs.sync_agent(dirs, BRANCH, tree.head())
    assert (victim / "keep").read_text() == "mine\n"
    assert not target.is_symlink()
    # a directory on the way turned into a link: refused, nothing written there
    subprocess.run(["rm", "-rf", str(heads)], check=True)
    heads.symlink_to(victim)
    with pytest.raises(UnsafeGitDir):
        rundirs.sync_agent(dirs, BRANCH, tree.head())
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]


def test_import_only_fast_forwards_the_users_branch(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo, dirs, tree = _run(make_repo, tmp_path)
    (dirs.work_tree / "a.txt").write_text("run\n")
    tree.commit(
        tree.snapshot(tree.changes(), max_file_size=1 << 20), "it\n", author=WHO, committer=WHO
    )
    # someone moved the user's branch meanwhile: the run's commit is not forced over it
    git(repo, "branch", "-f", BRANCH, "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "user work")
    git(repo, "branch", "-f", BRANCH, "main")
    with pytest.raises(GitError):
        Repository(discover(repo)).import_branch(dirs.own, BRANCH)
    assert git(repo, "rev-parse", BRANCH) == git(repo, "rev-parse", "main")


def test_the_agents_git_knows_the_users_remotes_but_never_a_password_in_one(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = make_repo({"a.txt": "a\n"})
    git(repo, "remote", "add", "origin", "https://example.invalid/acme/app.git")
    git(repo, "remote", "add", "mirror", "https://me:hunter2@example.invalid/acme/app.git")
    git(repo, "remote", "add", "ssh", "git@example.invalid:acme/app.git")
    user = Repository(discover(repo))
    dirs = RunGitDirs(tmp_path / "git", tmp_path / "agent.git", tmp_path / "wt")
    rundirs.create(
        dirs,
        user_objects=repo / ".git" / "objects",
        branch=BRANCH,
        base=user.resolve_commit("HEAD"),
        remotes=user.remotes(),
    )

    assert _agent_git(dirs, "remote").split() == ["origin", "ssh"]
    assert "hunter2" not in (dirs.agent / "config").read_text()
    assert "hunter2" not in (dirs.own / "config").read_text()


@pytest.mark.parametrize("trap", ["fifo", "alternate"])
def test_an_object_store_rigged_to_hang_or_borrow_elsewhere_is_not_read(
    make_repo: RepoFactory, tmp_path: Path, trap: str
) -> None:
    _repo, dirs, tree = _run(make_repo, tmp_path)
    (dirs.work_tree / "one.txt").write_text("1\n")
    _agent_git(dirs, "add", "one.txt")
    _agent_git(dirs, "commit", "-qm", "one")
    if trap == "fifo":
        # git would block opening it, and outloop's run with it
        os.mkfifo(dirs.agent / "objects" / "pack" / "pack-0000.idx")
    else:
        other = make_repo({"secret.txt": "another client's\n"}, name="other")
        with (dirs.agent / "objects" / "info" / "alternates").open("a") as handle:
            handle.write(f"{other / '.git' / 'objects'}\n")

    assert tree.agent_commits() == []


def test_config_from_the_environment_does_not_reach_a_runs_git(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _repo, dirs, tree = _run(make_repo, tmp_path)
    marker = tmp_path / "pwned"
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "filter.evil.clean")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"sh -c 'echo pwned >> {marker}; cat'")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'include.path'='{tmp_path / 'inc'}'")
    (dirs.work_tree / ".gitattributes").write_text("* filter=evil\n")
    (dirs.work_tree / "a.txt").write_text("changed\n")

    tree.snapshot(tree.changes(), max_file_size=1 << 20)

    assert not marker.exists()
