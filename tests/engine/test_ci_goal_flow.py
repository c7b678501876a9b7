"""The CI goal's whole flow as the engine runs it: App token → push → wait for checks → PR → revoke.

Real parts: a git repository, a real git host over HTTP (git http-backend) that
only takes the run's token, the GitHub-shaped API checking the App's JWT, and
check runs scripted per pushed commit.
"""

from __future__ import annotations

import json
from pathlib import Path

from outloop_cli.config.model import CIGoalConfig
from outloop_cli.engine.forge import RunForge
from outloop_cli.forges.session import open_forge_session
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.ci.verifier import CITiming, CIVerifier
from outloop_cli.store.records import GoalResult, IterationRecord, RunRecord, RunState, StopReason
from tests.conftest import RepoFactory, git
from tests.fakes.git_http_server import GitHttpServer
from tests.fakes.github_server import FakeGitHub, rsa_key_pair

BRANCH = "outloop/fix/20260101-000000-abcdef"
GRANTED = {
    "checks": "read",
    "statuses": "read",
    "actions": "read",
    "contents": "write",
    "pull_requests": "write",
}


def commit(repo: Path, content: str) -> str:
    (repo / "calc.py").write_text(content)
    git(repo, "add", "calc.py")
    git(repo, "commit", "-qm", content.strip())
    return git(repo, "rev-parse", "HEAD").strip()


def test_app_token_push_checks_pr_and_revoke(make_repo: RepoFactory, tmp_path: Path) -> None:
    private, public = rsa_key_pair()
    repo = make_repo({"calc.py": "x = 0\n"})
    git(repo, "checkout", "-q", "-b", BRANCH)
    with FakeGitHub() as github, GitHttpServer(tmp_path / "host", "unset") as host:
        bare = host.create("octo/widgets.git")
        url = host.url_for("octo/widgets.git")
        git(repo, "remote", "add", "origin", url)
        github.add_app("4242", public, {77: ("octo", GRANTED)})
        secret = json.dumps({"app_id": "4242", "private_key": private, "installation_id": 77})
        session = open_forge_session(
            provider="github",
            secret=secret,
            remote_url=url,
            environ={"GITHUB_API_URL": github.api_url},
            want_pr=True,
        )
        # the git host takes the token GitHub minted for this run, and nothing else
        host.state.token = session.token()
        forge = RunForge(session, worktree=repo, branch=BRANCH, remote_url=url)
        verifier = CIVerifier(CIGoalConfig(timeout=10), timing=CITiming(0.05, 0.2, 2))

        def evaluate(n: int) -> GoalResult:
            ctx = GoalContext(
                workdir=repo, env={}, run_dir=tmp_path, iteration=n, **forge.goal_context_fields()
            )
            return verifier.evaluate(ctx)

        first = commit(repo, "x = 1\n")
        forge.push(first)
        assert git(bare, "rev-parse", BRANCH).strip() == first
        github.add_check(
            first,
            "tests",
            [(0.1, "in_progress"), (0.3, "completed", "failure")],
            output={"summary": "test_calc failed: expected 2"},
        )
        result1 = evaluate(1)
        assert not result1.met and "test_calc failed: expected 2" in result1.output_tail

        second = commit(repo, "x = 2\n")
        forge.push(second)
        assert git(bare, "rev-parse", BRANCH).strip() == second
        github.add_check(second, "tests", [(0.1, "in_progress"), (0.3, "completed", "success")])
        result2 = evaluate(2)
        assert result2.met
        # every API call and push used the minted, narrowed token
        (minted,) = github.minted.values()
        assert minted.repositories == ["widgets"]
        assert all(
            r.headers.get("authorization") == f"Bearer {minted.token}"
            for r in github.api_requests("/check-runs")
        )
        record = RunRecord(
            run_id="20260101-000000-abcdef",
            loop="fix",
            state=RunState.FINISHED,
            started_at="2026-01-01T00:00:00+00:00",
            branch=BRANCH,
            base_commit=git(repo, "rev-parse", "main").strip(),
            worktree=str(repo),
            repo_root=str(repo),
            config_path=".outloop/fix.yml",
            agent_label="claude",
            goal_label=verifier.label,
            stop_reason=StopReason.GOAL_MET,
            iterations=[
                IterationRecord(n=1, started_at="t", commit=first, goal=result1),
                IterationRecord(n=2, started_at="t", commit=second, goal=result2),
            ],
        )
        pull = forge.publish_pr(record)
        assert pull.created and not pull.draft
        assert f"/commit/{second})" in github.pulls["octo/widgets"][0]["body"]
        forge.close()
        assert minted.revoked
