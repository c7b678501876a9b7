"""A sandboxed run reaches what its loop asked for and its policy allows, through the egress proxy, and nothing else.

The agent of a real `outloop run` may reach a package index (127.0.0.2 stands
in for the internet). It then tries the rest: CONNECT to an unlisted port,
CONNECT to a listed name that resolves to loopback, unsetting the proxy
variables and connecting straight to each host, and a DNS query as an
exfiltration channel. Sandboxed, only the index answers, through the proxy,
and every connection is in the audit log; the control run without the
sandbox goes straight to every host and gets the DNS answer.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, loop_yaml, only_run, run_cli, runs_dir


class _Index(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = f"index on {self.server.server_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Servers:
    def __init__(self) -> None:
        self.index = ThreadingHTTPServer(("127.0.0.2", 0), _Index)
        self.unlisted = ThreadingHTTPServer(("127.0.0.2", 0), _Index)
        self.local = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
        self.dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dns.bind(("127.0.0.2", 0))
        self.queries: list[bytes] = []
        for server in (self.index, self.unlisted, self.local):
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        threading.Thread(target=self._answer, daemon=True).start()

    def _answer(self) -> None:
        while True:
            try:
                data, peer = self.dns.recvfrom(512)
            except OSError:
                return
            self.queries.append(data)
            self.dns.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

    def port(self, server: ThreadingHTTPServer) -> int:
        return int(server.server_address[1])

    def close(self) -> None:
        for server in (self.index, self.unlisted, self.local):
            server.shutdown()
            server.server_close()
        self.dns.close()


@pytest.fixture
def servers() -> Iterator[_Servers]:
    running = _Servers()
    try:
        yield running
    finally:
        running.close()


def _run(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: _Servers,
    sandbox: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    allowed = f"127.0.0.2:{servers.port(servers.index)}"
    unlisted = f"127.0.0.2:{servers.port(servers.unlisted)}"
    rebinding = f"localhost:{servers.port(servers.local)}"
    dns = f"127.0.0.2:{servers.dns.getsockname()[1]}"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("egress_agent.py", allowed, unlisted, rebinding, dns),
                "false",
                sandbox=sandbox,
                egress=[allowed, rebinding],
            )
        }
    )
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f'workspaces:\n  client-a:\n    repos: ["{repo}"]\n'
        f'    egress:\n      allow: ["{allowed}", "{rebinding}"]\n'
        '      reach_private: ["127.0.0.2/32"]\n'
    )
    policy.chmod(0o600)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))

    done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    run_dir = runs_dir(repo) / str(record["run_id"])
    log = run_dir / "logs" / "iter-001-agent.log"
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log.read_text()
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    return dict(json.loads(lines[-1])), audit


def test_in_the_sandbox_only_what_the_policy_allows_answers_through_the_proxy(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: _Servers,
) -> None:
    found, audit = _run(make_repo, tmp_path, monkeypatch, servers, "bwrap")

    assert found["plain_http_via_proxy"] == [200, "index on 127.0.0.2"], found
    assert found["connect_allowed"] == [200, "index on 127.0.0.2"]
    assert found["connect_unlisted"] == 403
    assert found["connect_rebinding"] == 403
    assert found["direct_allowed"] is False
    assert found["direct_unlisted"] is False
    assert found["direct_rebinding"] is False
    assert found["dns"] is False and servers.queries == []
    egress = [e for e in audit if e["event"] == "egress"]
    allowed = [e for e in egress if e["decision"] == "allowed"]
    refused = [e for e in egress if e["decision"] == "refused"]
    assert len(allowed) == 2 and all(e["bytes_down"] > 0 for e in allowed)
    assert {e["port"] for e in refused} == {
        servers.port(servers.unlisted),
        servers.port(servers.local),
    }
    assert any("resolves to loopback" in e["reason"] for e in refused)
    assert [e for e in audit if e["event"] == "egress_allowed"]


def test_control_without_the_sandbox_every_host_and_dns_are_reached(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: _Servers,
) -> None:
    found, audit = _run(make_repo, tmp_path, monkeypatch, servers, "none")

    assert found["direct_allowed"] is True, found
    assert found["direct_unlisted"] is True
    assert found["direct_rebinding"] is True
    assert found["dns"] is True and servers.queries
    assert not [e for e in audit if e["event"] == "egress"]
