"""The agent of a real `outloop run` goes for the Unix socket the broker takes listeners on.

The sandbox's relay gives the broker the listening socket of the access
proxy's port through a handoff socket bound into the sandbox. It is opened for
that one start and gone once the relay has connected, before the agent runs:
the attacker finds nothing listening there. The control, with the handoff
socket kept open for every connection (as it was before), shows the attacker
would reach the broker through it.

Behind that, in depth, with the socket kept open: the attacker binds a
listening Unix socket at a path of the host (its worktree) and hands that
over, so that the key-adding proxy would answer there, for any process of the
machine. The broker refuses it, and the proxy still answers inside; the
control, with the broker's check of what it is handed taken out too, shows
the proxy would then answer at the host's path. A second attacker hands over
a socket that lingers on close, to hold the broker's event loop in
``close()``: the broker closes it without waiting; the control, closing it
plainly, waits out the linger.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import echo_route, grant_api_key, grant_api_key_and_helper
from tests.support.e2e import (
    agent_cmd,
    agent_report,
    loop_yaml,
    run_cli,
    run_cli_patched,
)

# the protection taken out: each handoff socket takes every connection for as long as the
# run lasts, as the one handoff socket of a run did before (and the CI secret taken in as
# the console script's entry point takes it)
_KEEP_OPEN = """
import socket

from outloop_cli.credentials import ci_env
from outloop_cli.sandbox import handoff
from tests.support.handoff_controls import accept_every
ci_env.scrub_ci_secrets_at_startup(reexec=False)
handoff.ListenerHandoff._accept_once = accept_every
"""

# and in depth, the protection taken out: whatever is handed over is served
_NO_CHECK = """
handoff.ListenerHandoff._check = lambda self, fd, doomed: socket.socket(fileno=fd)
"""


# and in depth, the protection taken out: what is refused is closed as it comes, lingering
# and all
_PLAIN_CLOSE = """
import os

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
    patch: str | None,
    agent: tuple[str, ...] = ("handoff_attack_agent.py", "API_BASE"),
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
        done = run_cli(repo, *args) if patch is None else run_cli_patched(repo, patch, *args)

    assert done.returncode == 1, done.stderr
    return agent_report(repo)


def test_the_agent_finds_no_handoff_socket_listening(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _attack(make_repo, tmp_path, monkeypatch, patch=None)

    assert found["proxy"] is True, found
    # the port was handed over: the relay carries no bytes (one thread, no accept loop)
    assert found["relay_threads"] == 1, found
    assert found["handoffs"] == 1, found
    assert found["replies"] == ["error: [Errno 111] Connection refused"], found
    assert found["served_at_host_path"] is False, found


def test_control_with_the_handoff_socket_kept_open_the_agent_reaches_the_broker(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """And the broker's check of what it is handed, the next protection, refuses it."""
    found = _attack(make_repo, tmp_path, monkeypatch, patch=_KEEP_OPEN)

    assert found["proxy"] is True, found
    assert found["relay_threads"] == 1, found
    assert [reply.split(" ", 1)[0] for reply in found["replies"]] == ["no"], found
    assert found["served_at_host_path"] is False, found


def test_control_kept_open_and_without_the_check_the_proxy_answers_at_a_host_path(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _attack(make_repo, tmp_path, monkeypatch, patch=_KEEP_OPEN + _NO_CHECK)

    assert found["proxy"] is True, found
    assert found["replies"] == ["ok\n"], found
    assert found["served_at_host_path"] is True, found


@pytest.mark.parametrize("mode", ["direct", "nested"])
def test_a_socket_that_lingers_on_close_does_not_stall_the_broker(
    mode: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the handoff socket kept open for it: it cannot even be sent in a real run."""
    agent = ("linger_attack_agent.py", "API_BASE", str(_LINGER), mode)
    found = _attack(make_repo, tmp_path, monkeypatch, patch=_KEEP_OPEN, agent=agent)

    assert found["lost"] is False, found
    assert found["reply"].startswith("no "), found
    assert found["status"] == 200, found
    assert found["seconds"] < _LINGER / 2, found


@pytest.mark.parametrize("mode", ["direct", "nested"])
def test_control_closed_on_the_loop_the_socket_holds_the_broker_for_its_linger(
    mode: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = ("linger_attack_agent.py", "API_BASE", str(_LINGER), mode)
    patch = _KEEP_OPEN + _PLAIN_CLOSE
    found = _attack(make_repo, tmp_path, monkeypatch, patch=patch, agent=agent)

    assert found["lost"] is False, found
    assert found["reply"].startswith("no "), found
    assert found["seconds"] >= _LINGER - 0.5, found


def test_a_socket_that_lingers_on_close_cannot_even_be_sent(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = ("linger_attack_agent.py", "API_BASE", str(_LINGER), "direct")
    found = _attack(make_repo, tmp_path, monkeypatch, patch=None, agent=agent)

    assert found["unreachable"] == "[Errno 111] Connection refused", found
    assert found["status"] == 200, found


# the protection taken out: the handoff socket where the reviewed design first had it, in
# the broker's own directory (bound into the sandbox, writable, for git's helper), kept open
_IN_BROKER_DIR = """
from outloop_cli.credentials import broker as broker_module
from outloop_cli.sandbox import bwrap, ports

def _in_broker_dir(self):
    path = self._dir / "proxy-1.handoff"
    return ports.open_handoff_on(self._loop, self._proxy.open_handoff(path), path)


broker_module.Broker._open_handoff = _in_broker_dir
bwrap.hide = lambda args, hidden, resolve=None: []
"""

# the protection taken out: the handoff sockets' directory shown where a bind shows it
_SHOWN = """
from outloop_cli.sandbox import bwrap
bwrap.hide = lambda args, hidden, resolve=None: []
"""


def _path_attack(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    patch: str | None,
    **loop: Any,
) -> dict[str, Any]:
    with UpstreamServer() as upstream:
        credentials = echo_route(upstream.url)
        # a helper credential: the broker's socket directory comes into the agent's view
        credentials["tool"] = {"via": "helper"}
        agent = agent_cmd("handoff_path_agent.py", "API_BASE")
        repo = make_repo(
            {".outloop/fix.yml": loop_yaml(agent, "false", credentials=credentials, **loop)}
        )
        grant_api_key_and_helper(monkeypatch, tmp_path, repo, upstream.url)
        args = ("run", "fix", "--max-iterations", "1")
        done = run_cli(repo, *args) if patch is None else run_cli_patched(repo, patch, *args)
    assert done.returncode == 1, done.stderr
    return agent_report(repo)


def test_the_agent_cannot_reach_its_handoff_socket_by_its_host_path(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor does the broker's directory, which the agent sees writable, hold any."""
    found = _path_attack(make_repo, tmp_path, monkeypatch, patch=None)

    assert found["sources"] == 1, found
    assert found["replies"] == ["error: FileNotFoundError"], found
    assert found["broker_dir"] == ["broker.sock", "proxy.sock"], found


def test_control_in_the_broker_dir_the_agent_reaches_it_by_its_host_path(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _path_attack(make_repo, tmp_path, monkeypatch, patch=_KEEP_OPEN + _IN_BROKER_DIR)

    assert found["sources"] == 1, found
    assert [reply.split(" ", 1)[0] for reply in found["replies"]] == ["no"], found
    assert "proxy-1.handoff" in found["broker_dir"], found


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short XDG_RUNTIME_DIR of the test's own: where the broker makes its sockets."""
    directory = Path(tempfile.mkdtemp(prefix="ol-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("control", [False, True], ids=["hidden", "control-shown"])
def test_a_view_that_shows_the_directory_above_still_hides_the_handoff_sockets(
    control: bool,
    runtime_dir: Path,
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop declares the directory the broker's sockets are made in (its runtime
    directory) readable: the handoff sockets' own directory is still empty there, even with
    the socket kept open for it. The control, with that hiding taken out, shows the socket,
    and the agent reaches the broker through it."""
    patch = _KEEP_OPEN + (_SHOWN if control else "")
    found = _path_attack(
        make_repo, tmp_path, monkeypatch, patch, sandbox={"read": [str(runtime_dir)]}
    )

    assert found["sources"] == 1, found
    if control:
        [listing] = found["handoff_dirs"]
        assert len(listing) == 1, found
        assert [reply.split(" ", 1)[0] for reply in found["replies"]] == ["no"], found
    else:
        assert found["handoff_dirs"] == [[]], found
        assert found["replies"] == ["error: FileNotFoundError"], found
