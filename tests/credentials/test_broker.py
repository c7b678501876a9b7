"""The broker: capabilities, its socket, what it gives the agent, and ``outloop credential token``."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials import broker_wire
from outloop_cli.credentials.broker import key_variable
from outloop_cli.credentials.capability import (
    CapabilityDenied,
    CapabilityTable,
    Purpose,
    Refusal,
)
from tests.support.credentials import Events, assert_no_leak, canary, started_broker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(ttl: float = 60) -> tuple[CapabilityTable, FakeClock]:
    clock = FakeClock()
    return CapabilityTable(run_id="r", workspace="w", ttl=ttl, clock=clock), clock


def denied(table: CapabilityTable, token: str, purpose: Purpose, name: str | None = None) -> str:
    with pytest.raises(CapabilityDenied) as info:
        table.check(token, (purpose,), name)
    return info.value.reason.value


def test_capability_is_bound_to_its_names_and_purpose() -> None:
    caps, _ = table()
    cap = caps.issue(Purpose.AGENT, ["github"])
    assert cap.run_id == "r" and cap.workspace == "w"
    assert len(cap.token) >= 40
    assert caps.check(cap.token, (Purpose.AGENT,), "github") is cap
    assert denied(caps, cap.token, Purpose.AGENT, "crm") == Refusal.NOT_IN_SCOPE.value
    assert denied(caps, cap.token, Purpose.PUSH) == Refusal.WRONG_PURPOSE.value
    assert denied(caps, cap.token[:-1], Purpose.AGENT) == Refusal.UNKNOWN.value
    assert denied(caps, "", Purpose.AGENT) == Refusal.UNKNOWN.value


def test_capability_expires_renews_and_is_revoked() -> None:
    caps, clock = table(ttl=10)
    cap = caps.issue(Purpose.PROXY, ["openai"])
    clock.now += 9
    caps.renew()
    clock.now += 9
    assert caps.check(cap.token, (Purpose.PROXY,), "openai") is cap
    clock.now += 1
    assert denied(caps, cap.token, Purpose.PROXY) == Refusal.EXPIRED.value
    # an expired capability cannot be brought back
    caps.renew()
    assert denied(caps, cap.token, Purpose.PROXY) == Refusal.EXPIRED.value
    other = caps.issue(Purpose.PROXY, ["openai"])
    assert caps.revoke_all() == 1
    assert denied(caps, other.token, Purpose.PROXY) == Refusal.REVOKED.value
    assert caps.live_tokens() == []


def test_every_token_is_fresh() -> None:
    caps, _ = table()
    tokens = {caps.issue(Purpose.AGENT, ["x"]).token for _ in range(200)}
    assert len(tokens) == 200


def test_key_variables_follow_the_tools_conventions() -> None:
    assert key_variable("OPENAI_BASE_URL") == "OPENAI_API_KEY"
    assert key_variable("ANTHROPIC_BASE_URL") == "ANTHROPIC_API_KEY"
    assert key_variable("GOOGLE_GEMINI_BASE_URL") == "GEMINI_API_KEY"
    assert key_variable("CRM_BASE_URL") == "CRM_API_KEY"
    assert key_variable("CRM_ENDPOINT") is None


def test_socket_is_private_and_gone_after_the_run(tmp_path: Path) -> None:
    helper = CredentialConfig(name="tool", via="helper")
    with started_broker({"tool": canary()}, [helper], Events()) as broker:
        path = broker.socket_path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(path.stat().st_mode)
    assert not path.exists()
    assert not path.parent.exists()


def test_agent_env_holds_no_secret_and_helper_access_only_when_asked() -> None:
    key = canary()
    proxy = CredentialConfig(
        name="openai", via="proxy", upstream="https://api.example.com/v1", env="OPENAI_BASE_URL"
    )
    helper = CredentialConfig(name="tool", via="helper")
    with started_broker({"openai": key, "tool": key}, [proxy], Events()) as broker:
        env = broker.agent_env()
        assert set(env) == {"OPENAI_BASE_URL", "OPENAI_API_KEY"}
        assert_no_leak(key, repr(env))
    with started_broker({"openai": key, "tool": key}, [proxy, helper], Events()) as broker:
        env = broker.agent_env()
        assert {broker_wire.ENV_SOCKET, broker_wire.ENV_CAPABILITY} <= set(env)
        # via: helper needs no git config
        assert "GIT_CONFIG_COUNT" not in env
        # the proxy's capability and the helper's are different tokens
        proxy_token = env["OPENAI_BASE_URL"].rsplit("/", 2)[1]
        assert proxy_token != env[broker_wire.ENV_CAPABILITY]
        assert sorted(broker.mask_values()) == sorted(
            [proxy_token, env[broker_wire.ENV_CAPABILITY]]
        )
        assert_no_leak(key, repr(env))


def token_cli(env: dict[str, str], name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outloop_cli", "credential", "token", name],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_credential_token_prints_a_grant_only_for_via_helper_names() -> None:
    key, other = canary(), canary()
    events = Events()
    creds = [
        CredentialConfig(name="tool", via="helper"),
        CredentialConfig(name="forge", via="git", host="github.com"),
    ]
    with started_broker({"tool": key, "forge": other}, creds, events) as broker:
        env = broker.agent_env()
        ok = token_cli(env, "tool")
        git_only = token_cli(env, "forge")
        not_asked = token_cli(env, "crm")
    assert (ok.returncode, ok.stdout) == (0, key + "\n")
    assert git_only.returncode == 3 and "credential_not_via_helper" in git_only.stderr
    assert not_asked.returncode == 3 and "credential_not_in_scope" in not_asked.stderr
    assert_no_leak(other, git_only.stdout, git_only.stderr, events.dump())
    assert_no_leak(key, events.dump())
    assert [g["name"] for g in events.named("credential_granted")] == ["tool"]
    assert events.reasons() == ["credential_not_via_helper", "credential_not_in_scope"]
    after = token_cli(env, "tool")
    assert after.returncode == 3 and after.stdout == ""


def test_socket_refuses_garbage_and_unknown_operations() -> None:
    events = Events()
    with started_broker(
        {"tool": canary()}, [CredentialConfig(name="tool", via="helper")], events
    ) as broker:
        token = broker.agent_env()[broker_wire.ENV_CAPABILITY]
        path = str(broker.socket_path)
        assert broker_wire.ask(path, {"op": "dump", "capability": token})["ok"] is False
        assert broker_wire.ask(path, {"op": "token", "capability": 5})["ok"] is False
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(path)
            conn.sendall(b"not json\n")
            assert b'"ok": false' in conn.recv(1000)
    assert events.reasons() == ["bad_request", "capability_unknown", "bad_request"]


def test_socket_clients_past_the_cap_are_closed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each client may wait 10 s for its request; more than the cap do not hold descriptors."""
    from outloop_cli.credentials import broker as broker_module

    monkeypatch.setattr(broker_module, "_MAX_SOCKET_CLIENTS", 2)
    events = Events()
    with started_broker(
        {"tool": canary()}, [CredentialConfig(name="tool", via="helper")], events
    ) as broker:
        token = broker.agent_env()[broker_wire.ENV_CAPABILITY]
        path = str(broker.socket_path)
        silent = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        for conn in silent:
            conn.connect(path)
        # both are being served (waiting for their request): the next one is closed unanswered
        with pytest.raises(broker_wire.BrokerUnavailable):
            broker_wire.ask(path, {"op": "token", "capability": token, "name": "tool"})
        for conn in silent:
            conn.close()
        # their handlers see the end, answer it and let go of their places
        deadline = time.monotonic() + 10
        while broker._socket_clients and time.monotonic() < deadline:
            time.sleep(0.01)
        reply = broker_wire.ask(path, {"op": "token", "capability": token, "name": "tool"})
        assert reply["ok"] is True


def test_events_carry_the_workspace_but_never_a_capability() -> None:
    events = Events()
    with started_broker(
        {"tool": canary()}, [CredentialConfig(name="tool", via="helper")], events
    ) as broker:
        env = broker.agent_env()
        token_cli(env, "tool")
    [granted] = events.named("credential_granted")
    assert granted["workspace"] == "client-a" and granted["name"] == "tool"
    # the audit log stamps run, time and sequence; the broker must not compete with it
    assert not {"run", "event", "seq", "time", "prev"} & set(granted)
    assert env[broker_wire.ENV_CAPABILITY] not in events.dump()
