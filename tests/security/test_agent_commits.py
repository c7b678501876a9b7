"""Commits the agent makes with its own git are scanned before any of them is kept.

The agent holds a granted secret (as with `via: helper`) and puts it in
history with `git commit` where the scan of the work tree cannot see it: in a
file it commits and deletes again, or in a commit message. outloop copies the
agent's commits into its own git dir and scans each one (message, author, every
file it changed) before it builds the iteration commit on them: the run stops
with `secret_in_diff`, and nothing is imported into the user's repository or
pushed to the remote. The control plants a value outloop does not know is
secret: the same commits are kept, imported and pushed, which shows the scan
is what stops the secret.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.fakes.git_http_server import GitHttpServer
from tests.support.credentials import bound
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, only_run, run_cli, runs_dir


def _run(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    planted: str,
    where: str,
    token: str,
) -> tuple[Path, dict[str, object], Path, str]:
    with GitHttpServer(tmp_path / "host", token) as host:
        host.create("project.git")
        loop = loop_yaml(
            agent_cmd("own_commit_agent.py", planted[::-1], where),
            counter_goal(1),
            push=True,
            sandbox="bwrap",
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
    record = only_run(repo)
    return repo, record, tmp_path / "host" / "project.git", done.stdout + done.stderr


def _everything(repo: Path, remote: Path) -> str:
    """All history the user's repository and the remote hold, messages and patches."""
    return "".join(
        git(where, "log", "-p", "--all", "--format=%an %ae%n%B") for where in (repo, remote)
    )


@pytest.mark.parametrize("where", ["file", "message"])
def test_a_secret_in_the_agents_own_commit_is_refused_never_imported_never_pushed(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    token = "tok-" + secrets.token_urlsafe(16)

    repo, record, remote, output = _run(
        make_repo, tmp_path, monkeypatch, planted=token, where=where, token=token
    )

    assert record["stop_reason"] == "secret_in_diff", record["stop_detail"]
    assert "a commit the agent made itself" in str(record["stop_detail"])
    assert token not in output
    assert token not in _everything(repo, remote)
    # nothing of the turn was imported: the run's branch is still at the base
    assert git(repo, "rev-parse", str(record["branch"])) == git(repo, "rev-parse", "main")
    assert git(remote, "for-each-ref") == ""
    audit = (runs_dir(repo) / str(record["run_id"]) / "audit.jsonl").read_text()
    assert '"secret_in_diff"' in audit and token not in audit


@pytest.mark.parametrize("where", ["file", "message"])
def test_control_a_value_outloop_does_not_know_is_kept_imported_and_pushed(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    token = "tok-" + secrets.token_urlsafe(16)
    canary = "canary-" + secrets.token_hex(12)

    repo, record, remote, _ = _run(
        make_repo, tmp_path, monkeypatch, planted=canary, where=where, token=token
    )

    assert record["stop_reason"] == "goal_met", record["stop_detail"]
    # the agent's own commits are part of the branch, in the user's repository and pushed
    pushed = git(remote, "rev-parse", f"refs/heads/{record['branch']}").strip()
    assert pushed == git(repo, "rev-parse", str(record["branch"])).strip()
    assert canary in git(remote, "log", "-p", "--format=%B", pushed)
    assert canary in git(repo, "log", "-p", "--format=%B", pushed)


def _goal_naming(value: str) -> str:
    """A goal script whose JUnit report names a failing test after ``value`` (held reversed)."""
    return (
        "import sys\n"
        f"v = {value[::-1]!r}[::-1]\n"
        "xml = '<testsuite><testcase classname=\"c\" name=\"test_' + v + '\"><failure/>'\n"
        "open('r.xml', 'w').write(xml + '</testcase></testsuite>')\n"
        "sys.exit(1)\n"
    )


@pytest.mark.parametrize("secret", [True, False])
def test_outloops_own_commit_message_never_carries_a_secret_the_goal_named(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch, secret: bool
) -> None:
    # the failing test names go into the iteration commit's message, and the agent names tests
    value = ("tok-" if secret else "canary-") + secrets.token_urlsafe(16)
    if secret:
        monkeypatch.setenv("OUTLOOP_SECRET_ME_API", value)
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("counter_agent.py"),
                f"{sys.executable} goal_report.py",
                goal__junit="r.xml",
                limits={"max_iterations": 1},
            ),
            "goal_report.py": _goal_naming(value),
        }
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 1, done.stderr
    message = git(repo, "log", "-1", "--format=%B", str(only_run(repo)["branch"]))
    assert "Failing: c::test_" in message
    # the control: a value outloop does not know is secret is quoted as it is
    assert (value in message) is (not secret)
