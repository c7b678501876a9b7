"""The agent of a real `outloop run` hands the broker a socket of its own as the proxy's port.

The sandbox's relay gives the broker the listening socket of the access
proxy's port through a Unix socket the agent can reach too. The attacker
binds a listening Unix socket at a path of the host (its worktree) and hands
that over, so that the key-adding proxy would answer there, for any process
of the machine. The broker refuses it, and the proxy still answers inside;
the control run, with the broker's check of what it is handed taken out,
shows the proxy would then answer at the host's path. A second attacker hands
over a socket that lingers on close, to hold the broker's event loop in
``close()``: the broker closes it without waiting; the control, closing it
plainly, waits out the linger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import echo_route, grant_api_key
from tests.support.e2e import (
    agent_cmd,
    agent_report,
    loop_yaml,
    run_cli,
    run_cli_patched,
)

# the protection taken out: whatever is handed over is served (and the CI secret taken
# in as the console script's entry point takes it)
_NO_CHECK = """
import socket
from outloop_cli.credentials import ci_env
from outloop_cli.sandbox import handoff
ci_env.scrub_ci_secrets_at_startup(reexec=False)
handoff.ListenerHandoff._check = lambda self, fd, doomed: socket.socket(fileno=fd)
"""


# the protection taken out: what is refused is closed as it comes, lingering and all
_PLAIN_CLOSE = """
import os
import socket

from outloop_cli.credentials import ci_env
from outloop_cli.sandbox import handoff
ci_env.scrub_ci_secrets_at_startup(reexec=False)

def _close_on_the_loop(loop, items, done):
    for item in items:
        item.close() if isinstance(item, socket.socket) else os.close(item)
    if done is not None:
        done()


handoff._close_elsewhere = _close_on_the_loop
"""
_LINGER = 4


def _attack(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    control: bool,
    agent: tuple[str, ...] = ("handoff_attack_agent.py", "API_BASE"),
    patch: str = _NO_CHECK,
) -> dict[str, Any]:
    with UpstreamServer() as upstream:
        repo = make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd(*agent),
                    "false",
                    credentials=echo_route(upstream.url),
                ),
                ".gitignore": "steal.sock\n",
            }
        )
        grant_api_key(monkeypatch, tmp_path, repo, upstream.url)
        args = ("run", "fix", "--max-iterations", "1")
        done = run_cli_patched(repo, patch, *args) if control else run_cli(repo, *args)

    assert done.returncode == 1, done.stderr
    return agent_report(repo)


def test_the_broker_serves_no_socket_the_agent_hands_it(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _attack(make_repo, tmp_path, monkeypatch, control=False)

    assert found["proxy"] is True, found
    # the port was handed over: the relay carries no bytes (one thread, no accept loop)
    assert found["relay_threads"] == 1, found
    assert found["handoffs"] == 1, found
    assert [reply.split(" ", 1)[0] for reply in found["replies"]] == ["no"], found
    assert found["served_at_host_path"] is False, found


def test_control_without_the_check_the_proxy_answers_at_a_host_path(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _attack(make_repo, tmp_path, monkeypatch, control=True)

    assert found["proxy"] is True, found
    assert found["replies"] == ["ok\n"], found
    assert found["served_at_host_path"] is True, found


@pytest.mark.parametrize("mode", ["direct", "nested"])
def test_a_socket_that_lingers_on_close_does_not_stall_the_broker(
    mode: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = ("linger_attack_agent.py", "API_BASE", str(_LINGER), mode)
    found = _attack(make_repo, tmp_path, monkeypatch, control=False, agent=agent)

    assert found["lost"] is False, found
    assert found["reply"].startswith("no "), found
    assert found["status"] == 200, found
    assert found["seconds"] < _LINGER / 2, found


@pytest.mark.parametrize("mode", ["direct", "nested"])
def test_control_closed_on_the_loop_the_socket_holds_the_broker_for_its_linger(
    mode: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = ("linger_attack_agent.py", "API_BASE", str(_LINGER), mode)
    found = _attack(make_repo, tmp_path, monkeypatch, control=True, agent=agent, patch=_PLAIN_CLOSE)

    assert found["lost"] is False, found
    assert found["reply"].startswith("no "), found
    assert found["seconds"] >= _LINGER - 0.5, found
