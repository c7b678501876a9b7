"""``outloop pr``: a real run, pushed to a real git host over HTTP, PR on a GitHub-shaped API."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from outloop_cli.commands.pr import pull_request_for_run
from outloop_cli.forges.pull_request import html_base_url, publish_pull_request, render_pr_body
from outloop_cli.forges.session import open_forge_session
from outloop_cli.store.records import IterationRecord, RunRecord, RunState, StopReason
from outloop_cli.store.runs import RunStore
from tests.conftest import RepoFactory, git
from tests.fakes.git_http_server import GitHttpServer
from tests.fakes.github_server import FakeGitHub
from tests.support import keyring_env
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli
from tests.support.keyring_env import SecretService

secret_service = keyring_env.secret_service
use_secret_service = keyring_env.use_secret_service

TOKEN = "ghp_test_token"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture
def git_host(tmp_path: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(tmp_path / "host", TOKEN) as host:
        yield host


def finished_run(
    make_repo: RepoFactory, git_host: GitHttpServer, *, target: int
) -> tuple[Path, RunRecord]:
    """A real loop run (counter agent) in a repo whose origin is the HTTP git host."""
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"),
                counter_goal(target),
                limits={"max_iterations": 2, "stall": 3},
                description="Count to the target",
            )
        }
    )
    git_host.create("octo/widgets.git")
    git(repo, "remote", "add", "origin", git_host.url_for("octo/widgets.git"))
    done = run_cli(repo, "run", "fix")
    assert done.returncode in (0, 1), done.stderr
    store = RunStore(repo / ".git")
    (run_id,) = store.run_ids()
    return repo, store.load(run_id)


def test_pr_pushes_the_branch_and_opens_a_draft(
    make_repo: RepoFactory, git_host: GitHttpServer, github: FakeGitHub
) -> None:
    repo, record = finished_run(make_repo, git_host, target=5)
    assert not record.goal_met
    env = {"GITHUB_API_URL": github.api_url}
    outcome = pull_request_for_run(repo, record.run_id[-6:], secret=TOKEN, environ=env)
    assert outcome.pull.created and outcome.pull.draft and outcome.pull.number == 1
    # outloop pushed the run branch (and only it) to the git host, with the token
    bare = git_host.root / "octo/widgets.git"
    heads = git(bare, "for-each-ref", "--format=%(refname)").split()
    assert heads == [f"refs/heads/{record.branch}"]
    assert (
        outcome.pushed is not None
        and outcome.pushed.sha == git(repo, "rev-parse", record.branch).strip()
    )
    (created,) = github.api_requests("/pulls")[-1:]
    assert created.method == "POST"
    assert created.body["head"] == record.branch and created.body["base"] == "main"
    assert created.body["draft"] is True
    body = created.body["body"]
    assert "| Iteration | Commit | Goal | Failing | Duration | Cost | Result |" in body
    for it in record.iterations:
        if it.commit:
            assert f"/commit/{it.commit})" in body
    assert "max_iterations" in body
    assert created.body["title"].startswith("outloop(fix): Count to the target — goal not met")
    # a second call updates the same pull request, and pushes nothing new
    again = pull_request_for_run(repo, record.run_id, secret=TOKEN, environ=env)
    assert not again.pull.created and again.pushed is None
    assert github.api_requests("/pulls")[-1].method == "PATCH"
    assert len(github.pulls["octo/widgets"]) == 1


def test_the_pr_leaves_draft_when_the_goal_is_met(
    make_repo: RepoFactory, git_host: GitHttpServer, github: FakeGitHub
) -> None:
    repo, record = finished_run(make_repo, git_host, target=5)
    env = {"GITHUB_API_URL": github.api_url}
    pull_request_for_run(repo, record.run_id, secret=TOKEN, environ=env)
    assert github.pulls["octo/widgets"][0]["draft"] is True
    met = dataclasses.replace(record, stop_reason=StopReason.GOAL_MET)
    with open_forge_session(
        provider="github",
        secret=TOKEN,
        remote_url=git_host.url_for("octo/widgets.git"),
        environ=env,
        want_pr=True,
    ) as session:
        info = publish_pull_request(session, met, environ=env)
    assert not info.draft
    assert github.pulls["octo/widgets"][0]["draft"] is False
    graphql = github.api_requests("/graphql")
    assert graphql and "markPullRequestReadyForReview" in graphql[0].body["query"]


def test_a_met_goal_opens_a_ready_pr(
    make_repo: RepoFactory, git_host: GitHttpServer, github: FakeGitHub
) -> None:
    repo, record = finished_run(make_repo, git_host, target=1)
    assert record.goal_met
    outcome = pull_request_for_run(
        repo, record.run_id, secret=TOKEN, environ={"GITHUB_API_URL": github.api_url}
    )
    assert not outcome.pull.draft


def test_pr_refuses_to_overwrite_foreign_commits(
    make_repo: RepoFactory, git_host: GitHttpServer, github: FakeGitHub, tmp_path: Path
) -> None:
    from outloop_cli.errors import CouldNotRun

    repo, record = finished_run(make_repo, git_host, target=5)
    # somebody else's commit on the remote branch, unknown to this repository
    bare = git_host.root / "octo/widgets.git"
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", "-b", "main", str(other))
    git(other, "commit", "-q", "--allow-empty", "-m", "foreign")
    git(other, "push", "-q", str(bare), f"main:refs/heads/{record.branch}")
    with pytest.raises(CouldNotRun, match="which this run did not make"):
        pull_request_for_run(
            repo, record.run_id, secret=TOKEN, environ={"GITHUB_API_URL": github.api_url}
        )
    assert not github.pulls.get("octo/widgets")


def test_cli_pr_without_a_secret_says_how_to_store_one(
    make_repo: RepoFactory, git_host: GitHttpServer
) -> None:
    repo, record = finished_run(make_repo, git_host, target=5)
    done = run_cli(repo, "pr", record.run_id)
    assert done.returncode == 3, done.stderr
    assert "no `github` secret" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_pr_unknown_run_is_a_usage_error(make_repo: RepoFactory) -> None:
    repo = make_repo({"a.txt": "x"})
    done = run_cli(repo, "pr", "nope")
    assert done.returncode == 2 and "no run matches" in done.stderr


def test_body_fits_githubs_limit_and_escapes_markdown() -> None:
    base = RunRecord(
        run_id="20260101-000000-abcdef",
        loop="fix",
        state=RunState.FINISHED,
        started_at="2026-01-01T00:00:00+00:00",
        branch="outloop/fix/20260101-000000-abcdef",
        base_commit="c" * 40,
        worktree="/tmp/w",
        repo_root="/tmp/r",
        config_path=".outloop/fix.yml",
        agent_label="claude",
        goal_label="pytest | tee `x`",
        stop_reason=StopReason.MAX_ITERATIONS,
        stop_detail="limit <b>reached</b>",
    )
    base.iterations = [
        IterationRecord(n=i, started_at="2026-01-01T00:00:00+00:00", commit=f"{i:040x}")
        for i in range(3000)
    ]
    body = render_pr_body(base, repo_url="https://github.com/octo/widgets")
    assert len(body) <= 65_536
    assert "iterations not shown" in body
    assert "pytest \\| tee \\`x\\`" in body
    assert "<b>" not in body
    assert f"{2999:040x}" in body and f"{0:040x}" in body


def test_html_base_url() -> None:
    assert html_base_url("https://api.github.com") == "https://github.com"
    assert html_base_url("https://ghe.corp/api/v3") == "https://ghe.corp"


def test_gitlab_merge_request_is_a_draft_by_title_until_met() -> None:
    from tests.fakes.gitlab_server import FakeGitLab

    record = RunRecord(
        run_id="20260101-000000-abcdef",
        loop="fix",
        state=RunState.FINISHED,
        started_at="2026-01-01T00:00:00+00:00",
        branch="outloop/fix/20260101-000000-abcdef",
        base_commit="c" * 40,
        worktree="/tmp/w",
        repo_root="/tmp/r",
        config_path=".outloop/fix.yml",
        agent_label="claude",
        goal_label="CI: gitlab",
        stop_reason=StopReason.MAX_ITERATIONS,
        iterations=[IterationRecord(n=1, started_at="t", commit="d" * 40)],
    )
    with (
        FakeGitLab() as gitlab,
        open_forge_session(
            provider="gitlab",
            secret="glpat-test-token",
            remote_url="https://gitlab.example.com/group/sub/widgets.git",
            environ={"CI_API_V4_URL": gitlab.api_url},
        ) as session,
    ):
        first = publish_pull_request(session, record, environ={})
        assert first.created and first.draft and first.number == 1
        (mr,) = gitlab.merge_requests
        assert mr["title"].startswith("Draft: outloop(fix)")
        assert mr["target_branch"] == "main" and mr["source_branch"] == record.branch
        assert f"/-/commit/{'d' * 40})" in mr["description"]
        met = dataclasses.replace(record, stop_reason=StopReason.GOAL_MET)
        second = publish_pull_request(session, met, environ={})
        assert not second.created and not second.draft
        assert not gitlab.merge_requests[0]["draft"]
        assert len(gitlab.merge_requests) == 1


def test_cli_pr_with_the_secret_from_the_keyring(
    use_secret_service: SecretService,
    make_repo: RepoFactory,
    git_host: GitHttpServer,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole CLI path: policy → workspace → keyring → API and git host, token never shown."""
    repo, record = finished_run(make_repo, git_host, target=5)
    policy = Path(os.environ["XDG_CONFIG_HOME"]) / "outloop" / "policy.yml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(
        yaml.safe_dump(
            {
                "workspaces": {
                    "acme": {
                        "repos": [str(repo)],
                        # the fakes stand in for api.github.com and github.com
                        "secrets": [
                            {
                                "name": "github",
                                "upstreams": [github.api_url],
                                "hosts": [git_host.host],
                            }
                        ],
                    }
                }
            }
        )
    )
    stored = run_cli_stdin(repo, TOKEN, "secrets", "set", "github", "--workspace", "acme")
    assert stored.returncode == 0, stored.stderr
    monkeypatch.setenv("GITHUB_API_URL", github.api_url)
    done = run_cli(repo, "pr", record.run_id, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["number"] == 1 and result["draft"] is True and result["created"] is True
    assert result["pushed"] == git(repo, "rev-parse", record.branch).strip()
    assert TOKEN not in done.stdout + done.stderr
    human = run_cli(repo, "pr", record.run_id[:12])
    assert human.returncode == 0, human.stderr
    assert "updated pull request #1 (draft)" in human.stderr
    assert human.stdout.strip() == "https://github.example/octo/widgets/pull/1"


def run_cli_stdin(cwd: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outloop_cli", *args],
        cwd=cwd,
        input=stdin + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
