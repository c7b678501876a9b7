"""`outloop run` with a CI goal, end to end: real CLI, real git host over HTTP, GitHub-shaped API."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import RepoFactory, git
from tests.fakes.git_http_server import GitHttpServer
from tests.fakes.github_server import FakeGitHub
from tests.support.e2e import agent_cmd, loop_yaml, run_cli

TOKEN = "ghp_e2e_token_0123456789"


def ci_loop(api_url: str, **overrides: object) -> str:
    text = loop_yaml(agent_cmd("counter_agent.py"), "true", **overrides)
    data = yaml.safe_load(text)
    data["goal"] = {"ci": {"provider": "github", "api_url": api_url, "timeout": "30s"}}
    data["push"] = True
    return yaml.safe_dump(data, sort_keys=False)


Setup = tuple[Path, Path, FakeGitHub, GitHttpServer]


@pytest.fixture
def setup(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    with FakeGitHub(tokens=(TOKEN,)) as github, GitHttpServer(tmp_path / "host", TOKEN) as host:
        bare = host.create("octo/widgets.git")

        def checks(fake: FakeGitHub, repo: str, sha: str) -> None:
            shown = subprocess.run(
                ["git", "show", f"{sha}:counter.txt"], cwd=bare, capture_output=True, text=True
            )
            value = int(shown.stdout) if shown.returncode == 0 else 0
            conclusion = "success" if value >= 2 else "failure"
            fake.add_check(
                sha,
                "tests",
                [(0.1, "queued"), (0.2, "in_progress"), (0.4, "completed", conclusion)],
                repo=repo,
                output={"title": "tests", "summary": f"counter is {value}, need 2"},
            )

        github.on_new_sha = checks
        repo = make_repo({".outloop/fix.yml": ci_loop(github.api_url)})
        git(repo, "remote", "add", "origin", host.url_for("octo/widgets.git"))
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
                                    "hosts": [host.host],
                                }
                            ],
                        }
                    }
                }
            )
        )
        monkeypatch.setenv("OUTLOOP_SECRET_ACME_GITHUB", TOKEN)
        monkeypatch.setenv("OUTLOOP_CI_POLL", "0.05")
        monkeypatch.setenv("OUTLOOP_CI_GRACE", "5")
        yield repo, bare, github, host


def test_loop_until_ci_is_green(setup: Setup) -> None:
    repo, bare, _, host = setup
    done = run_cli(repo, "run", "fix", "--json")
    assert done.returncode == 0, done.stderr + host.describe()
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["stop_reason"] == "goal_met"
    iterations = record["iterations"]
    assert [it["n"] for it in iterations] == [0, 1, 2]
    assert iterations[1]["goal"]["failing"] == ["tests (failure)"]
    assert git(bare, "rev-parse", record["branch"]).strip() == iterations[2]["commit"]
    prompt = (Path(record["files"]["run_dir"]) / "logs" / "iter-002-prompt.md").read_text()
    assert "counter is 1, need 2" in prompt
    assert TOKEN not in done.stderr + done.stdout
    audit = Path(record["files"]["audit"]).read_text()
    assert TOKEN not in audit and '"pushed"' in audit
    assert all(r.authorized for r in host.requests if r.authorization)


def test_pr_true_opens_a_pull_request_that_leaves_draft(setup: Setup) -> None:
    repo, _, github, host = setup
    config = yaml.safe_load((repo / ".outloop/fix.yml").read_text())
    config["pr"] = True
    config["goal"]["ci"]["grace"] = "5s"
    config["goal"]["ci"]["poll"] = "1s"
    (repo / ".outloop/fix.yml").write_text(yaml.safe_dump(config))
    git(repo, "commit", "-qam", "pr: true")
    done = run_cli(repo, "run", "fix", "--json")
    assert done.returncode == 0, done.stderr + host.describe()
    record = json.loads(done.stdout.splitlines()[-1])
    (pull,) = github.pulls["octo/widgets"]
    assert pull["head"]["ref"] == record["branch"] and pull["draft"] is False
    assert record["iterations"][2]["commit"] in pull["body"]


def test_a_ci_goal_without_the_secret_stops_with_an_error(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, bare, _, _ = setup
    monkeypatch.delenv("OUTLOOP_SECRET_ACME_GITHUB")
    done = run_cli(repo, "run", "fix", "--json")
    assert done.returncode == 3, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["stop_reason"] == "error"
    assert "needs the `github` secret" in record["stop_detail"]
    assert git(bare, "for-each-ref") == ""
