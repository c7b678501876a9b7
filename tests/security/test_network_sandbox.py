"""The sandbox's network: loopback of its own, the access proxy the only way out.

The agent of a real `outloop run` holds a proxied API credential and tries the
other ways off the machine: the upstream's own port on 127.0.0.1 (bypassing
the proxy's allow-list and audit), a server on 127.0.0.2 standing in for the
internet, and an abstract Unix socket of the host (how a session bus is often
found). Sandboxed, only the proxy answers, at the same base URL as outside;
the control run without the sandbox reaches all three.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.fakes.accept_loop import AcceptLoop
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import echo_route, grant_api_key
from tests.support.e2e import agent_cmd, agent_report, loop_yaml, run_cli


class _Listener:
    """Accepts connections and drops them: enough to show a connection got through."""

    def __init__(self, family: int, address: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self._loop = AcceptLoop(self.sock, lambda conn: conn.close()).start()

    def close(self) -> None:
        self._loop.stop()


@pytest.fixture
def targets() -> Iterator[tuple[str, str]]:
    internet = _Listener(socket.AF_INET, ("127.0.0.2", 0))
    name = f"outloop-test-{secrets.token_hex(8)}"
    abstract = _Listener(socket.AF_UNIX, "\0" + name)
    try:
        yield f"127.0.0.2:{internet.sock.getsockname()[1]}", name
    finally:
        internet.close()
        abstract.close()


def _run(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    targets: tuple[str, str],
    sandbox: str,
) -> dict[str, Any]:
    internet, abstract = targets
    with UpstreamServer() as upstream:
        direct = f"127.0.0.1:{upstream.port}"
        repo = make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("net_probe_agent.py", "API_BASE", direct, internet, abstract),
                    "false",
                    sandbox=sandbox,
                    credentials=echo_route(upstream.url),
                )
            }
        )
        grant_api_key(monkeypatch, tmp_path, repo, upstream.url)

        done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    return agent_report(repo)


def test_in_the_sandbox_only_the_proxy_answers(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    targets: tuple[str, str],
) -> None:
    found = _run(make_repo, tmp_path, monkeypatch, targets, "bwrap")

    assert found["proxy"] is True, found
    assert found["direct_upstream"] is False
    assert found["internet"] is False
    assert found["abstract_socket"] is False


def test_control_without_the_sandbox_every_way_is_open(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    targets: tuple[str, str],
) -> None:
    found = _run(make_repo, tmp_path, monkeypatch, targets, "none")

    assert found["proxy"] is True, found
    assert found["direct_upstream"] is True
    assert found["internet"] is True
    assert found["abstract_socket"] is True
