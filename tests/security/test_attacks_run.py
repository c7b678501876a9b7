"""Attacks on a run's credentials, each by the agent of a real `outloop run`.

Every test plants two random canaries: client A's key (granted to this run through
the policy) and client B's key (another workspace's; never granted). The agent
attacks; then the canaries are searched, in plain, base64, hex, URL and JSON
forms, in everything: the agent's loot, outloop's output, the run's files
(logs, audit, reports), the repository's history, and what any host other than
the real upstream received. The real upstream must have received client A's key
only where the proxy put it, and never client B's.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from outloop_cli.credentials.masking import secret_forms
from tests.conftest import RepoFactory
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import bound
from tests.support.e2e import AGENTS, counter_goal, loop_yaml, only_run, run_cli, runs_dir

# attack → the run's expected stop reason
ATTACKS = {
    "dump_env": "goal_met",
    "read_proc": "goal_met",
    "ps": "goal_met",
    "own_authorization": "goal_met",
    "upstream_echoes_the_key": "goal_met",
    "absolute_uri_and_connect": "goal_met",
    "redirect_off_host": "goal_met",
    "other_route_and_forged_capability": "goal_met",
    "method_not_allowed": "goal_met",
    "capture_the_capability": "goal_met",
    "helper_without_a_capability": "goal_met",
    "helper_injection": "goal_met",
    "keyring_and_home_files": "goal_met",
    "edit_the_loop_file": "protected_path",
    # in the agent's own git config, which outloop's git never reads: nothing to stop
    "insteadof": "goal_met",
}


def _assert_clean(value: str, data: bytes, where: str) -> None:
    for label, form in secret_forms(value).items():
        assert form not in data, f"a canary leaked into {where} ({label})"


def _events(repo: Path) -> list[dict[str, object]]:
    audit = runs_dir(repo) / str(only_run(repo)["run_id"]) / "audit.jsonl"
    return [json.loads(line) for line in audit.read_text().splitlines()]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_by_the_agent_of_a_real_run_leaks_nothing(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attack: str
) -> None:
    key_a = f"sk-a/{secrets.token_urlsafe(18)}+Z="
    key_b = f"sk-b/{secrets.token_urlsafe(18)}+Z="
    loot = tmp_path / "loot.bin"
    with UpstreamServer() as upstream, UpstreamServer() as other:
        loop = loop_yaml(
            [sys.executable, str(AGENTS / "attacker_agent.py"), attack, str(loot), other.url],
            counter_goal(1),
            # unsandboxed on purpose: the broker, the proxy and the masker must hold on
            # their own (`sandbox: auto` on a machine without bubblewrap); inside the
            # sandbox the agent's own network would stop the off-host attacks first
            sandbox="none",
            credentials={
                "api": {
                    "via": "proxy",
                    "upstream": upstream.url,
                    "env": "API_BASE",
                    "allow": ["GET /echo", "GET /leak", "GET /gzip", "GET /redirect"],
                }
            },
        )
        repo = make_repo({".outloop/attack.yml": loop})
        policy = tmp_path / "policy.yml"
        policy.write_text(
            "workspaces:\n"
            f'  client-a:\n    repos: ["{repo}"]\n'
            f"    secrets: [{bound('api', upstreams=[upstream.url])}]\n"
            '  client-b:\n    repos: ["/srv/client-b"]\n    secrets: [api, crm]\n'
        )
        policy.chmod(0o600)
        monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key_a)
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_B_API", key_b)
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_B_CRM", key_b + "crm")

        done = run_cli(repo, "run", "attack")

        if attack == "capture_the_capability":
            # the run is over: its capability must open nothing any more
            captured = loot.read_text().strip()
            assert captured.startswith("http://127.0.0.1:")
            seen = len(upstream.requests)
            with pytest.raises((urllib.error.URLError, OSError)):
                urllib.request.urlopen(captured + "/echo", timeout=5)
            assert len(upstream.requests) == seen
        upstream_got = upstream.requests
        other_got = other.requests

    record = only_run(repo)
    assert record["stop_reason"] == ATTACKS[attack], (record["stop_detail"], done.stderr)
    assert loot.exists() or ATTACKS[attack] != "goal_met", "the attack did not run"
    sinks: dict[str, bytes] = {
        "the agent's loot": loot.read_bytes() if loot.exists() else b"",
        "outloop's output": (done.stdout + done.stderr).encode(),
        # as bytes: a file the agent committed need not be UTF-8 (0xff in what it read)
        "the repository's history": subprocess.run(
            ["git", "log", "-p", "--all", "--format=%B"], cwd=repo, check=True, capture_output=True
        ).stdout,
        "another host": repr([(r.headers, r.body) for r in other_got]).encode(),
    }
    for path in (runs_dir(repo) / str(record["run_id"])).rglob("*"):
        if path.is_file():
            sinks[str(path)] = path.read_bytes()
    worktree = Path(str(record["worktree"]))
    for path in worktree.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            sinks[f"worktree {path.name}"] = path.read_bytes()
    for where, data in sinks.items():
        _assert_clean(key_a, data, where)
        _assert_clean(key_b, data, where)
    # the upstream saw client A's key only as the proxy sent it, never B's
    for request in upstream_got:
        assert key_b not in repr(request.headers)
        assert request.headers.get("Authorization") == f"Bearer {key_a}"
        assert "agent-key" not in repr(request.headers)
    events = [str(e["event"]) for e in _events(repo)]
    assert "credential_granted" in events
    refusals = {
        "absolute_uri_and_connect",
        "other_route_and_forged_capability",
        "method_not_allowed",
    }
    if attack in refusals:
        denied = [
            e
            for e in _events(repo)
            if e["event"] in ("proxy_request", "credential_denied", "proxy_refused")
            and (e.get("status") in (400, 403, 404, 405) or e["event"] != "proxy_request")
        ]
        assert denied, f"no refusal was recorded for {attack}: {sorted(set(events))}"
