"""The agent of a real `outloop run` sends a lingering socket to a Unix socket of the broker's.

Two Unix sockets of the broker's are in the sandbox's reach: the access
proxy's (bound in for the relay's fallback) and the broker's own (git's
credential helper). Their readers are the broker's event loop, reading with a
plain ``recv()``, and the kernel closes whatever descriptors a message carries
and its reader does not take in the reader's thread: the last close of a
socket set to linger waits as long as the agent chose, and every request of
the run waits with it. Every such socket refuses descriptors
(``SO_PASSRIGHTS`` off, Linux 6.16): the agent's send fails with EPERM, and
the proxy answers at once. The control, with the refusal taken out, shows the
send going through and the proxy held for the linger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outloop_cli.sandbox import ports
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

# the protection taken out: every Unix socket takes descriptors (and the CI secret taken
# in as the console script's entry point takes it)
_TAKES_DESCRIPTORS = """
from outloop_cli.credentials import ci_env
from outloop_cli.sandbox import ports
ci_env.scrub_ci_secrets_at_startup(reexec=False)
ports.refuse_descriptors = lambda sock: False
"""
_LINGER = 4


def _attack(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    target: str,
    control: bool,
) -> dict[str, Any]:
    agent = ("linger_attack_agent.py", "API_BASE", str(_LINGER), target)
    with UpstreamServer() as upstream:
        credentials = echo_route(upstream.url)
        if target == "broker":
            # a helper credential: the broker's own socket comes into the agent's reach
            credentials["tool"] = {"via": "helper"}
        repo = make_repo(
            {".outloop/fix.yml": loop_yaml(agent_cmd(*agent), "false", credentials=credentials)}
        )
        grant = grant_api_key_and_helper if target == "broker" else grant_api_key
        grant(monkeypatch, tmp_path, repo, upstream.url)
        args = ("run", "fix", "--max-iterations", "1")
        done = run_cli_patched(repo, _TAKES_DESCRIPTORS, *args) if control else run_cli(repo, *args)

    assert done.returncode == 1, done.stderr
    return agent_report(repo)


def test_this_kernel_can_refuse_descriptors() -> None:
    """The protection below is the kernel's: a machine without it must not pass unnoticed."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        assert ports.refuse_descriptors(sock)


@pytest.mark.parametrize("target", ["proxy", "broker"])
def test_a_unix_socket_of_the_broker_takes_no_descriptor_from_the_agent(
    target: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _attack(make_repo, tmp_path, monkeypatch, target=target, control=False)

    assert found["refused"] is True, found
    assert found["status"] == 200, found
    assert found["seconds"] < _LINGER / 2, found


@pytest.mark.parametrize("target", ["proxy", "broker"])
def test_control_a_socket_that_takes_descriptors_holds_the_broker_for_the_linger(
    target: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _attack(make_repo, tmp_path, monkeypatch, target=target, control=True)

    assert found["refused"] is False, found
    assert found["lost"] is False, found
    assert found["seconds"] >= _LINGER - 0.5, found
