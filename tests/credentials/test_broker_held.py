"""``approve.credentials``: the broker answers nothing for a held name until it is released."""

from __future__ import annotations

import urllib.error
import urllib.request

from outloop_cli.config.model import CredentialConfig
from tests.credentials.test_broker import token_cli
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import Events, canary, started_broker


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_a_held_credential_is_refused_until_a_human_releases_it() -> None:
    key = canary()
    events = Events()
    with UpstreamServer() as upstream:
        crm = CredentialConfig(name="crm", via="proxy", upstream=upstream.url, env="CRM_BASE")
        tool = CredentialConfig(name="tool", via="helper")
        with started_broker(
            {"crm": key, "tool": key}, [crm, tool], events, held=["crm", "tool"]
        ) as broker:
            env = broker.agent_env()
            held_proxy = _get(env["CRM_BASE"] + "/echo")
            held_helper = token_cli(env, "tool")
            broker.release("crm")
            broker.release("tool")
            released_proxy = _get(env["CRM_BASE"] + "/echo")
            released_helper = token_cli(env, "tool")
        received = upstream.requests
    assert held_proxy == 403
    assert held_helper.returncode == 3 and "awaiting_approval" in held_helper.stderr
    # while held, nothing reached the upstream: the key was never used
    assert len(received) == 1 and received[0].headers.get("Authorization") == f"Bearer {key}"
    assert released_proxy == 200
    assert (released_helper.returncode, released_helper.stdout) == (0, key + "\n")
    assert events.reasons()[:2] == ["awaiting_approval", "awaiting_approval"]
