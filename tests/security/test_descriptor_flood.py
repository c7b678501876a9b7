"""The agent of a real `outloop run` holds connections open until the runner has no descriptors.

Each connection the broker's proxy accepts is a file descriptor of the
runner's process, which also writes the audit log, the run's records and runs
git. The runner here has 600 (a patch sets its soft limit); the agent raises
its own and holds 700 connections to the proxy, then asks for a real route on
the first one. The proxy holds at most MAX_CONNECTIONS and answers the rest
503: the runner keeps its headroom, the request is served and audited, and
the run ends as it should. The control, with the cap lifted, shows the runner
out of descriptors: its supervision of the turn fails with EMFILE and the run
stops in error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.sandbox.ports import MAX_CONNECTIONS
from tests.conftest import RepoFactory
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import echo_route, grant_api_key
from tests.support.e2e import (
    agent_cmd,
    agent_report,
    loop_yaml,
    only_run,
    run_cli_patched,
    runs_dir,
)

_HELD = 700
_LIMIT = """
import resource
from outloop_cli.credentials import ci_env
ci_env.scrub_ci_secrets_at_startup(reexec=False)
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (600, hard))
"""
_NO_CAP = "from outloop_cli.sandbox import ports\nports.MAX_CONNECTIONS = 10**9\n"


def _flood(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patch: str
) -> tuple[Path, list[dict[str, Any]]]:
    with UpstreamServer() as upstream:
        repo = make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("fd_flood_agent.py", "API_BASE", str(_HELD)),
                    "false",
                    credentials=echo_route(upstream.url),
                )
            }
        )
        grant_api_key(monkeypatch, tmp_path, repo, upstream.url)
        run_cli_patched(repo, patch, "run", "fix", "--max-iterations", "1")
    run_dir = runs_dir(repo) / str(only_run(repo)["run_id"])
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    return repo, audit


def test_the_proxy_holds_a_bounded_number_of_connections(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, audit = _flood(make_repo, tmp_path, monkeypatch, _LIMIT)
    found = agent_report(repo)

    assert found["opened"] == _HELD, found
    # the cap, give or take one burst of accepts (the listen backlog, 128)
    assert found["busy"] >= _HELD - MAX_CONNECTIONS - 128, found
    assert found["status"] == "HTTP/1.1 200 OK", found
    served = [e for e in audit if e["event"] == "proxy_request" and e.get("status") == 200]
    assert len(served) == 1, served
    record = only_run(repo)
    assert record["stop_reason"] == "max_iterations", record.get("stop_detail")
    assert [e["event"] for e in audit][-1] == "run_stopped"


def test_control_without_the_cap_the_runner_runs_out_of_descriptors(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = _flood(make_repo, tmp_path, monkeypatch, _LIMIT + _NO_CAP)

    record = only_run(repo)
    assert record["stop_reason"] == "error", record.get("stop_detail")
    log = runs_dir(repo) / str(record["run_id"]) / "logs" / "iter-001-agent.log"
    assert "Too many open files" in log.read_text()
