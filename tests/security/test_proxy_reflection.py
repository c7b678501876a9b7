"""The access proxy attacked by the agent of a real `outloop run` (issue 12, part 3).

As the issue saw it: two workspaces' keys given as CI variables
(``OUTLOOP_SECRET_CLIENT_A_API``, ``OUTLOOP_SECRET_CLIENT_B_API``), an upstream
with a ``/v1`` path and an allow-list, the agent in ``sandbox: bwrap`` (its
own user namespace: not root there) speaking raw HTTP/1.1 with
``Connection: close`` through the sandbox's relay. Client A's key has token
characters only, as real keys do, so it is a valid header name: the
condition under which the header-name reflection got through.

The agent asks a reflecting upstream (``tests/fakes/reflecting_upstream.py``)
to hand the key back in every way HTTP allows, and tries ``/v1/public/..;/admin``
style paths and override headers against ``allow: GET /v1/public/*`` on an
upstream that normalises paths leniently. Every byte it received is searched
for both keys as an attacker would (every encoding, any letter case,
gunzipped, reversed).

The control run has no sandbox and also aims the same attacks at the upstream
itself: there the reflections give a key back (the agent's own, made-up one:
it has no other) and the paths reach the admin area, so the attacks are real
and the search finds what they get.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory, git
from tests.fakes.reflecting_upstream import (
    ADMIN,
    MODES,
    ReflectingUpstream,
    effective_path,
    is_admin,
)
from tests.support.credentials import bound
from tests.support.e2e import AGENTS, counter_goal, loop_yaml, only_run, run_cli, runs_dir
from tests.support.reflection import recovered

OWN_KEY = "sk-agent-made-up-0123456789abcdef"
REFUSED_ENCODINGS = {"gzip_gzip", "gzip_twice_headers", "br", "unknown", "te_gzip"}


def _attack_run(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attack: str,
    *,
    sandbox: str,
    control: bool,
) -> Attack:
    key_a = f"sk-proj-{secrets.token_hex(16)}_{secrets.token_hex(4)}"
    key_b = f"sk-proj-{secrets.token_hex(16)}_{secrets.token_hex(4)}"
    with ReflectingUpstream(other_key=key_b) as upstream:
        command = [sys.executable, str(AGENTS / "proxy_attack_agent.py"), attack, "API_BASE"]
        command += ["loot"] + ([upstream.url] if control else [])
        loop = loop_yaml(
            command,
            counter_goal(1),
            sandbox=sandbox,
            credentials={
                "api": {
                    "via": "proxy",
                    "upstream": upstream.url + "/v1",
                    "env": "API_BASE",
                    "allow": ["GET /v1/public/*", "GET /v1/reflect/*"],
                }
            },
        )
        repo = make_repo({".outloop/attack.yml": loop, ".gitignore": "loot/\n"})
        policy = tmp_path / "policy.yml"
        policy.write_text(
            "workspaces:\n"
            f'  client-a:\n    repos: ["{repo}"]\n'
            f"    secrets: [{bound('api', upstreams=[upstream.url])}]\n"
            '  client-b:\n    repos: ["/srv/client-b"]\n    secrets: [api]\n'
        )
        policy.chmod(0o600)
        monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key_a)
        monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_B_API", key_b)

        done = run_cli(repo, "run", "attack", "--max-iterations", "1")

    record = only_run(repo)
    assert record["stop_reason"] == "goal_met", (record.get("stop_detail"), done.stderr)
    loot = Path(str(record["worktree"])) / "loot"
    assert loot.is_dir(), "the attack did not run"
    # nothing of either key anywhere the run wrote or outloop printed
    sinks = {"outloop's output": (done.stdout + done.stderr).encode()}
    sinks["history"] = git(repo, "log", "-p", "--all", "--format=%B").encode()
    for path in (runs_dir(repo) / str(record["run_id"])).rglob("*"):
        if path.is_file():
            sinks[str(path)] = path.read_bytes()
    for where, data in sinks.items():
        assert not recovered(key_a, data), where
        assert not recovered(key_b, data), where
    verified = run_cli(repo, "audit", "verify", str(record["run_id"]))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    audit = runs_dir(repo) / str(record["run_id"]) / "audit.jsonl"
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    return Attack(loot, key_a, key_b, upstream, events)


@dataclass
class Attack:
    loot: Path
    key_a: str
    key_b: str
    upstream: ReflectingUpstream
    events: list[dict[str, Any]]


def _proxy_loot(loot: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in loot.iterdir() if not p.name.startswith("direct-")}


def _check_reflections(loot: Path, key_a: str, key_b: str) -> None:
    got = _proxy_loot(loot)
    assert {f"proxy-{mode}.bin" for mode in MODES} <= set(got)
    for name, data in got.items():
        assert not recovered(key_a, data), (name, data[:300])
        assert not recovered(key_b, data), name
    for mode in REFUSED_ENCODINGS:
        assert got[f"proxy-{mode}.bin"].startswith(b"HTTP/1.1 502"), mode
    assert got["proxy-reason.bin"].startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"X-Echo-***: 1" in got["proxy-header_name.bin"]
    for mode in ("split_chunks", "split_gzip", "close_delimited"):
        assert got[f"proxy-{mode}.bin"].startswith(b"HTTP/1.1 200"), mode
        assert b"***" in got[f"proxy-{mode}.bin"], mode


def _check_paths(attack: Attack) -> dict[str, dict[str, str]]:
    loot, upstream = attack.loot, attack.upstream
    found: dict[str, dict[str, str]] = json.loads((loot / "paths.json").read_text())
    for label, data in _proxy_loot(loot).items():
        assert ADMIN not in data, label
    for label, lines in found.items():
        if label.startswith("x_"):
            # admitted (the path is allowed), without the header that would redirect it:
            # the upstream serves /v1/public/ok, not the admin area
            assert lines["proxy"].startswith("HTTP/1.1 200"), (label, lines)
        else:
            assert lines["proxy"].startswith("HTTP/1.1 400"), (label, lines)
    # what reached the upstream through the proxy: only allowed paths, never an override
    through_proxy = [
        s for s in upstream.seen if s.header("Authorization") == f"Bearer {attack.key_a}"
    ]
    assert through_proxy
    for seen in through_proxy:
        assert not is_admin(effective_path(seen)), seen.target
        assert seen.header("X-Original-URL") is None and seen.header("X-Rewrite-URL") is None
    return found


def test_in_the_sandbox_the_agent_gets_no_key_back(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = _attack_run(
        make_repo, tmp_path, monkeypatch, "reflect", sandbox="bwrap", control=False
    )
    _check_reflections(attack.loot, attack.key_a, attack.key_b)
    # the upstream did get client A's key, so there was something to hand back; never B's
    assert all(s.header("Authorization") == f"Bearer {attack.key_a}" for s in attack.upstream.seen)
    refused = [e for e in attack.events if e["event"] == "proxy_request" and e["status"] == 502]
    assert len(refused) >= len(REFUSED_ENCODINGS)


def test_in_the_sandbox_dot_segments_and_overrides_do_not_leave_the_allow_list(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = _attack_run(make_repo, tmp_path, monkeypatch, "paths", sandbox="bwrap", control=False)
    found = _check_paths(attack)
    denied = [e for e in attack.events if e["event"] == "credential_denied"]
    assert {e["reason"] for e in denied} == {"bad_path"}
    assert len(denied) == len([label for label in found if not label.startswith("x_")])
    dropped = [e.get("dropped_headers") for e in attack.events if e["event"] == "proxy_request"]
    assert ["x-original-url"] in dropped and ["x-rewrite-url"] in dropped


def test_control_the_same_attacks_on_the_upstream_itself_work(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reflected = _attack_run(
        make_repo, tmp_path, monkeypatch, "reflect", sandbox="none", control=True
    )
    # through the proxy: as clean as in the sandbox
    _check_reflections(reflected.loot, reflected.key_a, reflected.key_b)
    # straight from the upstream: every reflection gives the key it was sent back
    for mode in MODES:
        data = (reflected.loot / f"direct-{mode}.bin").read_bytes()
        assert recovered(OWN_KEY, data), mode


def test_control_the_same_paths_on_the_upstream_itself_reach_the_admin_area(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = _attack_run(make_repo, tmp_path, monkeypatch, "paths", sandbox="none", control=True)
    found = _check_paths(attack)
    for label in found:
        data = (attack.loot / f"direct-path-{label}.bin").read_bytes()
        assert ADMIN in data, (label, data[:200])
