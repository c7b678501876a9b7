"""The git credential helper: git's protocol exactly, and real git pushing to a real HTTP git host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials import git_helper, git_protocol
from outloop_cli.credentials.broker import Broker
from tests.fakes.git_http_server import GitHttpServer
from tests.support.credentials import Events, assert_no_leak, canary, started_broker


def git_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra)
    return env


def run_git(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def helper(env: dict[str, str], operation: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """The helper exactly as git runs it (git_helper.helper_command): through the shell,
    with the operation appended."""
    command = git_helper.helper_command()
    assert command.startswith("!")
    return subprocess.run(
        ["/bin/sh", "-c", command[1:] + ' "$@"', command[1:], operation],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=30,
    )


def helper_argv() -> list[str]:
    """The Python process the helper starts for ``get``."""
    return git_helper.helper_argv()


@pytest.fixture
def token() -> str:
    return canary().replace("/", "_").replace("+", "-").replace("=", "")


@pytest.fixture
def host(tmp_path: Path, token: str) -> Iterator[GitHttpServer]:
    with GitHttpServer(tmp_path / "host", token) as server:
        server.create("team/repo.git")
        server.create("team/other.git")
        yield server


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    run_git(path, git_env(), "init", "-q", "-b", "main").check_returncode()
    (path / "a.txt").write_text("a\n")
    run_git(path, git_env(), "add", "a.txt").check_returncode()
    run_git(path, git_env(), "commit", "-q", "-m", "a").check_returncode()
    return path


def git_cred(host: GitHttpServer) -> CredentialConfig:
    return CredentialConfig(name="forge", via="git", host=host.host)


# --- the protocol ---------------------------------------------------------------------


def test_parse_reads_attributes_lists_and_stops_at_the_blank_line() -> None:
    request = git_protocol.parse(
        b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=example.com:8443\n"
        b"path=org/repo.git\nwwwauth[]=Basic realm=x\nfuture_key=whatever\n\nhost=evil.example\n"
    )
    assert request.protocol == "https"
    assert request.host == "example.com:8443"
    assert request.path == "org/repo.git"
    assert request.lists["capability"] == ("authtype", "state")
    assert request.get("future_key") == "whatever"


@pytest.mark.parametrize(
    "data",
    [
        b"protocol=https\nhost=good.example\rhost=evil.example\n",
        b"protocol=https\nhost=good.example\0evil\n",
        b"protocol=https\nhost=good.example\nhost=evil.example\n",
        b"protocol=https\nnonsense\n",
        b"protocol=https\n=value\n",
        b"\xff\xfe=1\n",
    ],
)
def test_parse_refuses_requests_that_could_smuggle_an_attribute(data: bytes) -> None:
    with pytest.raises(git_protocol.BadCredentialInput):
        git_protocol.parse(data)


def test_reply_never_writes_a_value_that_breaks_a_line() -> None:
    assert git_protocol.format_reply({"username": "u", "password_expiry_utc": 5}) == (
        b"username=u\npassword_expiry_utc=5\n"
    )
    with pytest.raises(git_protocol.BadCredentialInput):
        git_protocol.format_reply({"password": "tok\nhost=evil"})


# --- the helper process ---------------------------------------------------------------


def test_get_answers_with_username_password_and_expiry(host: GitHttpServer, token: str) -> None:
    events = Events()
    with started_broker({"forge": token}, [git_cred(host)], events, ttl=120) as broker:
        env = git_env(**broker.agent_env())
        done = helper(
            env,
            "get",
            f"capability[]=authtype\nprotocol=http\nhost={host.host}\nnew_key=x\n\n".encode(),
        )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in done.stdout.decode().splitlines())
    assert lines["username"] == "x-access-token"
    assert lines["password"] == token
    assert time.time() + 100 < int(lines["password_expiry_utc"]) <= time.time() + 121
    # only what git asked for: no authtype/credential without the capability being used
    assert set(lines) == {"username", "password", "password_expiry_utc"}
    [granted] = events.named("credential_granted")
    assert granted["name"] == "forge"
    assert granted["host"] == host.host
    assert_no_leak(token, events.dump(), where="events")


def test_store_erase_and_unknown_operations_are_ignored(host: GitHttpServer, token: str) -> None:
    events = Events()
    with started_broker({"forge": token}, [git_cred(host)], events) as broker:
        env = git_env(**broker.agent_env())
        stdin = f"protocol=http\nhost={host.host}\nusername=u\npassword=p\n\n".encode()
        for operation in ("store", "erase", "capability", "some-future-op"):
            done = helper(env, operation, stdin)
            assert (done.returncode, done.stdout) == (0, b"")
    assert events.items == []


def test_declines_with_quit_for_another_host_or_plain_http_off_this_machine(
    host: GitHttpServer, token: str
) -> None:
    events = Events()
    creds = [git_cred(host), CredentialConfig(name="gh", via="git", host="github.com")]
    with started_broker({"forge": token, "gh": token}, creds, events) as broker:
        env = git_env(**broker.agent_env())
        other = helper(env, "get", b"protocol=https\nhost=evil.example\n\n")
        cleartext = helper(env, "get", b"protocol=http\nhost=github.com\n\n")
    assert other.stdout == cleartext.stdout == b"quit=1\n"
    assert b"host_not_allowed" in other.stderr
    assert events.reasons() == ["host_not_allowed", "protocol_not_allowed"]


def test_outside_a_run_the_helper_declines_quietly() -> None:
    done = helper(git_env(), "get", b"protocol=https\nhost=github.com\n\n")
    assert (done.returncode, done.stdout) == (0, b"quit=1\n")


def test_only_get_starts_the_python_helper(tmp_path: Path) -> None:
    # store and erase answer nothing (the broker keeps nothing git could update), so
    # the shell answers them: proven with a helper whose Python does not exist
    command = git_helper.helper_command(python=str(tmp_path / "no-python"))[1:]
    stdin = b"protocol=https\nhost=github.com\nusername=u\npassword=p\n\n"

    def run(operation: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["/bin/sh", "-c", command + ' "$@"', command, operation],
            input=stdin,
            capture_output=True,
            timeout=30,
        )

    for operation in ("store", "erase", "capability", "some-future-op"):
        assert (run(operation).returncode, run(operation).stdout) == (0, b"")
    assert run("get").returncode != 0


def test_outloop_credential_answers_as_the_helper_git_runs(host: GitHttpServer, token: str) -> None:
    events = Events()
    stdin = f"protocol=http\nhost={host.host}\n\n".encode()
    with started_broker({"forge": token}, [git_cred(host)], events, ttl=120) as broker:
        env = git_env(**broker.agent_env())
        by_git = helper(env, "get", stdin)
        by_hand = subprocess.run(
            [sys.executable, "-I", "-m", "outloop_cli", "credential", "get"],
            input=stdin,
            env=env,
            capture_output=True,
            timeout=30,
        )
        refused = helper(env, "get", b"protocol=https\nhost=evil.example\n\n")
    for done in (by_git, by_hand):
        assert done.returncode == 0, done.stderr
        lines = dict(line.split("=", 1) for line in done.stdout.decode().splitlines())
        assert (lines["username"], lines["password"]) == ("x-access-token", token)
    assert refused.stdout == b"quit=1\n"
    assert [e["name"] for e in events.named("credential_granted")] == ["forge", "forge"]
    assert events.reasons() == ["host_not_allowed"]


def test_the_helper_process_imports_neither_the_cli_nor_heavy_libraries() -> None:
    # git starts the helper for every credential request: what it imports is what it costs
    done = subprocess.run(
        [*helper_argv()[:1], "-X", "importtime", *helper_argv()[1:], "get"],
        input=b"protocol=https\nhost=github.com\n\n",
        env=git_env(),
        capture_output=True,
        timeout=30,
    )
    assert done.stdout == b"quit=1\n", done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "outloop_cli.credentials.git_answer" in imported
    heavy = {"typer", "click", "yaml", "pydantic", "dataclasses", "inspect", "urllib.parse"}
    heavy |= {"json", "socket", "re", "typing"}
    # nor what an annotation or os.environ would bring: a third of its own start
    heavy |= {"os", "collections", "collections.abc"}
    assert imported & heavy == set()
    assert not {m for m in imported if m.startswith(("outloop_cli.cli", "outloop_cli.config"))}


# --- real git, real host --------------------------------------------------------------


def test_the_agents_git_pushes_with_the_helper_and_not_after_revoke(
    host: GitHttpServer, work: Path, token: str
) -> None:
    events = Events()
    url = host.url_for("team/repo.git")
    with started_broker({"forge": token}, [git_cred(host)], events) as broker:
        env = git_env(**broker.agent_env())
        pushed = run_git(work, env, "push", url, "main")
        assert pushed.returncode == 0, pushed.stderr
        broker.revoke()
        refused = run_git(work, env, "push", url, "main:refs/heads/after-revoke")
        assert refused.returncode != 0
        assert "capability_revoked" in refused.stderr
    after_close = run_git(work, env, "push", url, "main:refs/heads/after-close")
    assert after_close.returncode != 0
    branches = run_git(host.root / "team/repo.git", git_env(), "branch", "--format=%(refname)")
    assert branches.stdout.split() == ["refs/heads/main"]
    assert events.reasons() == ["capability_revoked"]
    assert_no_leak(token, pushed.stderr, refused.stderr, after_close.stderr, events.dump())


def test_the_capability_expires_unless_renewed(host: GitHttpServer, work: Path, token: str) -> None:
    events = Events()
    url = host.url_for("team/repo.git")
    with started_broker({"forge": token}, [git_cred(host)], events, ttl=1.0) as broker:
        env = git_env(**broker.agent_env())
        broker.renew(60)
        time.sleep(1.2)
        # past the original TTL, but renewed
        assert run_git(work, env, "push", url, "main").returncode == 0
        broker.renew(0.5)
        time.sleep(0.7)
        late = run_git(work, env, "push", url, "main:refs/heads/late")
    assert late.returncode != 0
    assert events.reasons() == ["capability_expired"]


def test_without_via_git_the_agent_has_no_push_credential(
    host: GitHttpServer, work: Path, token: str
) -> None:
    proxy_only = CredentialConfig(
        name="openai", via="proxy", upstream="https://api.example.com", env="OPENAI_BASE_URL"
    )
    with started_broker({"forge": token, "openai": token}, [proxy_only], Events()) as broker:
        env = broker.agent_env()
        assert "OUTLOOP_CAPABILITY" not in env
        assert not any(k.startswith("GIT_CONFIG") for k in env)
        failed = run_git(work, git_env(**env), "push", host.url_for("team/repo.git"), "main")
    assert failed.returncode != 0
    assert all(not r.authorized for r in host.requests)


def test_outloops_own_push_is_scoped_to_the_remote_repository(
    host: GitHttpServer, work: Path, token: str
) -> None:
    events = Events()
    push_only = CredentialConfig(name="forge", via="git", host=host.host)
    with Broker.start(
        run_id="run-1",
        workspace="client-a",
        secrets={"forge": token},
        credentials=[],
        push_credentials=[push_only],
        on_event=events,
    ) as broker:
        # the agent gets nothing for git
        assert broker.agent_env() == {}
        env = git_env(**broker.push_env(host.url_for("team/repo.git")))
        ok = run_git(work, env, "push", host.url_for("team/repo.git"), "main")
        elsewhere = run_git(work, env, "push", host.url_for("team/other.git"), "main")
        # a new push capability replaces the old one
        old_capability = env["OUTLOOP_CAPABILITY"]
        fresh = broker.push_env(host.url_for("team/repo.git"))
        assert fresh["OUTLOOP_CAPABILITY"] != old_capability
        stale = run_git(work, env, "push", host.url_for("team/repo.git"), "main:refs/heads/s")
    assert ok.returncode == 0, ok.stderr
    assert elsewhere.returncode != 0
    assert stale.returncode != 0
    assert events.reasons() == ["path_not_allowed", "capability_revoked"]
    granted = events.named("credential_granted")
    assert [(g["purpose"], g["path"]) for g in granted] == [("push", "team/repo.git")]


def test_push_env_for_a_remote_without_credentials_only_hardens(tmp_path: Path) -> None:
    with started_broker({}, [], Events()) as broker:
        env = broker.push_env(str(tmp_path / "bare.git"))
    assert "OUTLOOP_CAPABILITY" not in env
    keys = {env[k]: env[k.replace("KEY", "VALUE")] for k in env if k.startswith("GIT_CONFIG_KEY")}
    assert keys["core.hooksPath"] == "/dev/null"
    assert keys["protocol.ext.allow"] == "never"
