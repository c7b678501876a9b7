"""`push: true`: outloop (never the agent) pushes the scratch branch with a brokered credential."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.fakes.git_http_server import GitHttpServer
from tests.support.credentials import assert_no_leak, bound
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, only_run, run_cli, runs_dir


def test_push_true_pushes_each_iteration_through_the_credential_helper(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "tok-" + secrets.token_urlsafe(16)
    with GitHttpServer(tmp_path / "host", token) as host:
        host.create("project.git")
        loop = loop_yaml(
            agent_cmd("counter_agent.py"),
            counter_goal(2),
            push=True,
            credentials={"forge": {"via": "git", "host": host.host}},
        )
        repo = make_repo({".outloop/fix.yml": loop})
        git(repo, "remote", "add", "origin", host.url_for("project.git"))
        policy = tmp_path / "policy.yml"
        policy.write_text(
            f'workspaces:\n  me:\n    repos: ["{repo}"]\n'
            f"    secrets: [{bound('forge', hosts=[host.host])}]\n"
        )
        policy.chmod(0o600)
        monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
        monkeypatch.setenv("OUTLOOP_SECRET_ME_FORGE", token)

        done = run_cli(repo, "run", "fix")

        requests = host.requests
    assert done.returncode == 0, done.stderr + host.describe()
    record = only_run(repo)
    pushed = git(tmp_path / "host" / "project.git", "rev-parse", f"refs/heads/{record['branch']}")
    assert pushed.strip() == git(repo, "rev-parse", record["branch"]).strip()
    # only the scratch branch went there
    refs = git(tmp_path / "host" / "project.git", "for-each-ref", "--format=%(refname)").split()
    assert refs == [f"refs/heads/{record['branch']}"]
    assert any(r.authorized for r in requests)
    audit = (runs_dir(repo) / str(record["run_id"]) / "audit.jsonl").read_text()
    assert audit.count('"event": "pushed"') == 2
    outputs = [done.stdout, done.stderr, git(repo, "log", "-p", "--all")]
    outputs += [p.read_text(errors="replace") for p in runs_dir(repo).rglob("*") if p.is_file()]
    assert_no_leak(token, *outputs, where="a run output")


def test_push_without_a_granted_credential_is_refused_by_the_host(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    with GitHttpServer(tmp_path / "host", "tok-" + secrets.token_urlsafe(8)) as host:
        host.create("project.git")
        repo = make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("counter_agent.py"), counter_goal(2), push=True
                )
            }
        )
        git(repo, "remote", "add", "origin", host.url_for("project.git"))

        done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "error"
    assert "credential" in str(record["stop_detail"]).lower()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("https://github.com/acme/app.git", "github"),
        ("https://gitlab.com/acme/app.git", "gitlab"),
        ("https://github.com.evil.example/acme/app.git", None),
        ("https://notgithub.com/acme/app.git", None),
        ("git@github.com:acme/app.git", None),  # ssh: the user's own ssh setup pushes
    ],
)
def test_the_default_push_credential_goes_only_to_the_forge_it_is_named_after(
    remote: str, expected: str | None
) -> None:
    from outloop_cli.config.loader import load_loop_text
    from outloop_cli.engine.access import push_credential

    config = load_loop_text(
        loop_yaml(["true"], "true", push=True), file=".outloop/fix.yml", name="fix"
    )
    found = push_credential(config, remote)
    assert (found.name if found else None) == expected
