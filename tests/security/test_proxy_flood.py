"""An agent of a real `outloop run` floods the proxy with refused requests (issue 12, part 4).

3,000 requests the allow-list refuses, as fast as one kept-alive connection
goes. Every one is refused; the audit log holds the first 20 and one event
that counts the other 2,980 (with the first and last time), so the run's own
events stay readable, and ``outloop audit verify`` accepts the chain.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from outloop_cli.store.audit import DEFAULT_LIMITS
from tests.conftest import RepoFactory
from tests.fakes.reflecting_upstream import ReflectingUpstream
from tests.support.credentials import grant_api_key
from tests.support.e2e import AGENTS, counter_goal, loop_yaml, only_run, run_cli, runs_dir


def test_three_thousand_refusals_leave_a_short_valid_log(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ReflectingUpstream() as upstream:
        command = [sys.executable, str(AGENTS / "proxy_attack_agent.py"), "flood", "API_BASE"]
        loop = loop_yaml(
            [*command, "loot"],
            counter_goal(1),
            credentials={
                "api": {
                    "via": "proxy",
                    "upstream": upstream.url + "/v1",
                    "env": "API_BASE",
                    "allow": ["GET /v1/public/*"],
                }
            },
        )
        repo = make_repo({".outloop/flood.yml": loop, ".gitignore": "loot/\n"})
        grant_api_key(monkeypatch, tmp_path, repo, upstream.url)

        done = run_cli(repo, "run", "flood", "--max-iterations", "1")
        assert upstream.seen == []

    record = only_run(repo)
    assert record["stop_reason"] == "goal_met", (record.get("stop_detail"), done.stderr)
    loot = Path(str(record["worktree"])) / "loot"
    assert json.loads((loot / "flood.json").read_text()) == {"403": 3000}

    audit = runs_dir(repo) / str(record["run_id"]) / "audit.jsonl"
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    threshold = DEFAULT_LIMITS.repeat_threshold
    assert kinds.count("credential_denied") - kinds.count("credential_granted") <= threshold
    denied = [e for e in events if e["event"] == "credential_denied" and e.get("via") == "proxy"]
    assert len(denied) == threshold
    [summary] = [e for e in events if e["event"] == "credential_denied_repeated"]
    assert summary["count"] == 3000 - threshold
    assert (summary["reason"], summary["name"]) == ("route_not_allowed", "api")
    assert summary["first"] <= summary["last"]
    # written before the run's own next event: the iteration's and the stop's come after it
    assert kinds.index("credential_denied_repeated") < kinds.index("run_stopped")
    assert len(events) < 60, len(events)

    verified = run_cli(repo, "audit", "verify", str(record["run_id"]))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok ")
