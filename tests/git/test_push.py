"""outloop's push of the run branch, against a real bare repository on disk."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from outloop_cli.errors import UsageError
from outloop_cli.git.push import (
    PushRejected,
    push_branch,
    redact_url,
    remote_branch_head,
    token_auth_env,
    with_git_config,
)
from tests.conftest import RepoFactory, git

BRANCH = "outloop/fix/20260101-000000-abcdef"


def setup_remote(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo({"a.txt": "one\n"})
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    return repo, bare


def commit_on_branch(repo: Path, branch: str, content: str) -> str:
    if git(repo, "branch", "--list", branch).strip():
        git(repo, "checkout", "-q", branch)
    else:
        git(repo, "checkout", "-q", "-b", branch)
    (repo / "a.txt").write_text(content)
    git(repo, "commit", "-qam", content)
    sha = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    return sha


def remote_refs(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(tuple(line.split(" ", 1)) for line in out.splitlines())  # type: ignore[misc]


def test_first_push_creates_the_branch_then_moves_it(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, bare = setup_remote(make_repo, tmp_path)
    first = commit_on_branch(repo, BRANCH, "two\n")
    result = push_branch(repo, remote="origin", branch=BRANCH, sha=first, expected="")
    assert result.updated and result.previous == ""
    assert remote_refs(bare)[f"refs/heads/{BRANCH}"] == first
    assert remote_branch_head(repo, remote="origin", branch=BRANCH) == first
    second = commit_on_branch(repo, BRANCH, "three\n")
    result = push_branch(repo, remote="origin", branch=BRANCH, sha=second, expected=first)
    assert result.updated and result.previous == first
    assert remote_refs(bare)[f"refs/heads/{BRANCH}"] == second
    # pushing the same commit again is a no-op, not an error
    again = push_branch(repo, remote="origin", branch=BRANCH, sha=second, expected=second)
    assert not again.updated


def test_rewritten_history_is_pushed_only_under_the_lease(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, bare = setup_remote(make_repo, tmp_path)
    first = commit_on_branch(repo, BRANCH, "two\n")
    push_branch(repo, remote="origin", branch=BRANCH, sha=first, expected="")
    # a resumed run rebuilt the branch: not a fast-forward, but the lease holds
    git(repo, "branch", "-f", BRANCH, "main")
    rewritten = commit_on_branch(repo, BRANCH, "other\n")
    push_branch(repo, remote="origin", branch=BRANCH, sha=rewritten, expected=first)
    assert remote_refs(bare)[f"refs/heads/{BRANCH}"] == rewritten


def test_someone_elses_push_is_never_overwritten(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo, bare = setup_remote(make_repo, tmp_path)
    first = commit_on_branch(repo, BRANCH, "two\n")
    push_branch(repo, remote="origin", branch=BRANCH, sha=first, expected="")
    # a human pushes to the run's branch from another clone
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    git(other, "checkout", "-q", BRANCH)
    (other / "human.txt").write_text("mine\n")
    git(other, "add", "human.txt")
    git(other, "commit", "-qm", "human")
    git(other, "push", "-q", "origin", BRANCH)
    human = git(other, "rev-parse", "HEAD").strip()
    second = commit_on_branch(repo, BRANCH, "three\n")
    with pytest.raises(PushRejected, match="not where this run left it"):
        push_branch(repo, remote="origin", branch=BRANCH, sha=second, expected=first)
    assert remote_refs(bare)[f"refs/heads/{BRANCH}"] == human


def test_first_push_refuses_an_existing_branch(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo, _ = setup_remote(make_repo, tmp_path)
    git(repo, "push", "-q", "origin", f"main:refs/heads/{BRANCH}")
    sha = commit_on_branch(repo, BRANCH + "-x", "two\n")
    with pytest.raises(PushRejected):
        push_branch(repo, remote="origin", branch=BRANCH, sha=sha, expected="")


def test_only_the_run_branch_is_pushed_and_no_hook_runs(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, bare = setup_remote(make_repo, tmp_path)
    before = remote_refs(bare)
    # config that would push everything, tags included, if outloop relied on defaults
    git(repo, "config", "remote.origin.push", "+refs/heads/*:refs/heads/*")
    git(repo, "config", "push.default", "matching")
    git(repo, "config", "push.followTags", "true")
    git(repo, "tag", "-a", "v1", "-m", "v1")
    git(repo, "branch", "feature")
    hook = repo / ".git" / "hooks" / "pre-push"
    marker = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    hook.chmod(0o755)
    sha = commit_on_branch(repo, BRANCH, "two\n")
    push_branch(repo, remote="origin", branch=BRANCH, sha=sha, expected="")
    after = remote_refs(bare)
    assert set(after) - set(before) == {f"refs/heads/{BRANCH}"}
    assert not marker.exists()


@pytest.mark.parametrize(
    "bad", ["", "-delete", "refs/heads/x", "a..b", "x:y", "main^", "a b", "x.lock", "@{-1}"]
)
def test_bad_branch_names_are_refused(make_repo: RepoFactory, tmp_path: Path, bad: str) -> None:
    repo, _ = setup_remote(make_repo, tmp_path)
    sha = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(UsageError):
        push_branch(repo, remote="origin", branch=bad, sha=sha, expected="")


def test_token_env_is_scoped_and_never_in_argv() -> None:
    env = token_auth_env("https://github.com/octo/widgets.git", "ghs_secret", base={"A": "1"})
    assert env["A"] == "1"
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"
    value = env["GIT_CONFIG_VALUE_0"]
    assert value.startswith("Authorization: Basic ")
    assert base64.b64decode(value.split()[-1]) == b"x-access-token:ghs_secret"
    chained = with_git_config(env, {"core.hooksPath": "/dev/null"})
    assert chained["GIT_CONFIG_COUNT"] == "2"
    assert chained["GIT_CONFIG_KEY_1"] == "core.hooksPath"
    with pytest.raises(UsageError, match="only http"):
        token_auth_env("git@github.com:octo/widgets.git", "t")


def test_urls_with_credentials_are_redacted() -> None:
    assert (
        redact_url("fatal: https://user:tok@host/x.git not found")
        == "fatal: https://***@host/x.git not found"
    )


def test_push_over_http_with_a_scoped_token(make_repo: RepoFactory, tmp_path: Path) -> None:
    from outloop_cli.errors import CouldNotRun
    from tests.fakes.git_http_server import GitHttpServer

    repo = make_repo({"a.txt": "one\n"})
    sha = commit_on_branch(repo, BRANCH, "two\n")
    with (
        GitHttpServer(tmp_path / "host-a", "tok-a") as host_a,
        GitHttpServer(tmp_path / "host-b", "tok-b") as host_b,
    ):
        bare = host_a.create("widgets.git")
        host_b.create("widgets.git")
        url_a, url_b = host_a.url_for("widgets.git"), host_b.url_for("widgets.git")
        env = token_auth_env(url_a, "tok-a")
        result = push_branch(repo, remote=url_a, branch=BRANCH, sha=sha, expected="", env=env)
        assert result.updated
        assert remote_refs(bare)[f"refs/heads/{BRANCH}"] == sha
        assert any(r.authorized for r in host_a.requests)
        # the same env sends nothing to another host: its header is scoped to host A
        with pytest.raises(CouldNotRun) as info:
            push_branch(repo, remote=url_b, branch=BRANCH, sha=sha, expected="", env=env)
        assert "tok-a" not in info.value.render()
        assert host_b.requests and all(r.authorization is None for r in host_b.requests)
        # a wrong token is refused by the host
        with pytest.raises(CouldNotRun):
            push_branch(
                repo,
                remote=url_b,
                branch=BRANCH,
                sha=sha,
                expected="",
                env=token_auth_env(url_b, "nope"),
            )


def test_resume_leases_on_the_runs_own_remote_head(make_repo: RepoFactory, tmp_path: Path) -> None:
    from outloop_cli.engine.forge import RunForge

    repo, bare = setup_remote(make_repo, tmp_path)
    first = commit_on_branch(repo, BRANCH, "two\n")
    forge = RunForge(None, worktree=repo, branch=BRANCH, remote_url=str(bare))
    forge.push(first)
    # a new process (resume) knows nothing of what was pushed: it asks the remote
    second = commit_on_branch(repo, BRANCH, "three\n")
    resumed = RunForge(None, worktree=repo, branch=BRANCH, remote_url=str(bare))
    assert resumed.adopt_remote() == first
    resumed.push(second)
    assert remote_refs(bare)[f"refs/heads/{BRANCH}"] == second
    # a commit on the remote that the run never made is not adopted
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", BRANCH, str(bare), str(other))
    git(other, "commit", "-q", "--allow-empty", "-m", "someone else")
    git(other, "push", "-q", "origin", BRANCH)
    with pytest.raises(PushRejected, match="did not make"):
        RunForge(None, worktree=repo, branch=BRANCH, remote_url=str(bare)).adopt_remote()
