"""A real run with brokered access: the policy grants, the proxy injects, nothing leaks."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import assert_no_leak, bound
from tests.support.e2e import agent_cmd, loop_yaml, only_run, run_cli, runs_dir


def _canary() -> str:
    return f"sk-canary/{secrets.token_urlsafe(18)}+Z="


def _policy(tmp_path: Path, repo: Path, upstream: str, workspace: str = "client-a") -> Path:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f'workspaces:\n  {workspace}:\n    repos: ["{repo}"]\n'
        f"    secrets: [{bound('api', upstreams=[upstream])}]\n"
        '  client-b:\n    repos: ["/nowhere/client-b"]\n    secrets: [api]\n'
    )
    policy.chmod(0o600)
    return policy


def _loop(upstream: str, *extra: str) -> str:
    return loop_yaml(
        agent_cmd("api_agent.py", "API_BASE", "API_KEY", *extra),
        "false",
        credentials={
            "api": {"via": "proxy", "upstream": upstream, "env": "API_BASE", "allow": ["GET /echo"]}
        },
    )


def _every_output(repo: Path) -> list[str]:
    sinks = []
    for path in runs_dir(repo).rglob("*"):
        if path.is_file():
            sinks.append(path.read_bytes().decode("utf-8", "replace"))
    sinks.append(git(repo, "log", "--all", "-p", "--format=%B"))
    return sinks


def test_agent_reaches_the_api_through_the_proxy_and_never_holds_the_key(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _canary()
    with UpstreamServer() as upstream:
        repo = make_repo({".outloop/fix.yml": _loop(upstream.url)})
        monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, upstream.url)))
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)

        done = run_cli(repo, "run", "fix", "--max-iterations", "1")

        received = upstream.requests
    assert done.returncode == 1, done.stderr
    assert [r.headers.get("Authorization") for r in received] == [f"Bearer {key}"]
    record = only_run(repo)
    env_dump = git(repo, "show", f"{record['branch']}:env-dump.txt")
    assert "API_KEY=" not in env_dump  # a custom variable gets a URL only; the proxy adds the key
    assert "API_BASE=http://127.0.0.1:" in env_dump
    assert_no_leak(key, done.stdout, done.stderr, *_every_output(repo), where="a run output")
    audit = [
        json.loads(line)
        for line in (runs_dir(repo) / str(record["run_id"]) / "audit.jsonl")
        .read_text()
        .splitlines()
    ]
    events = [e["event"] for e in audit]
    assert "credential_granted" in events
    proxied = [e for e in audit if e["event"] == "proxy_request"]
    assert proxied and proxied[0]["status"] == 200


def test_a_repo_of_another_workspace_gets_nothing_and_exits_3(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _canary()
    repo = make_repo({".outloop/fix.yml": _loop("http://127.0.0.1:9")})
    # the policy binds this secret to another client's repos only
    policy = tmp_path / "policy.yml"
    policy.write_text(
        'workspaces:\n  client-b:\n    repos: ["/nowhere/client-b"]\n    secrets: [api]\n'
    )
    policy.chmod(0o600)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_B_API", key)

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert "refused" in done.stderr and "api" in done.stderr
    assert not runs_dir(repo).exists(), "a refused run must write nothing"
    assert_no_leak(key, done.stdout, done.stderr)


def test_an_iteration_that_would_commit_a_secret_stops_with_secret_in_diff(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _canary()
    found = tmp_path / "somewhere-the-agent-looked.txt"
    found.write_text(f"the key is {key}\n")
    with UpstreamServer() as upstream:
        repo = make_repo({".outloop/fix.yml": _loop(upstream.url, str(found))})
        monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, upstream.url)))
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)

        done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "secret_in_diff"
    assert "found-key.txt" in record["stop_detail"]
    assert (
        git(repo, "rev-list", "--count", f"{record['base_commit']}..{record['branch']}").strip()
        == "0"
    )
    assert_no_leak(key, done.stdout, done.stderr, *_every_output(repo), where="a run output")
