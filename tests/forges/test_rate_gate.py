"""No request reaches a forge before the wait its last rate limit announced has passed.

The fake GitHub keeps every request that arrives inside an announced wait in
``early`` (GitHub counts those as abuse), so each test asserts that list stays
empty; the controls show the same traffic without the shared gate lands there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli.config.model import CIGoalConfig
from outloop_cli.forges.http import ForgeClient, RateLimited
from outloop_cli.forges.rate_gate import RateGate
from outloop_cli.forges.session import open_forge_session
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.ci.verifier import CITiming, CIVerifier
from tests.fakes.github_server import FakeGitHub

SHA = "c" * 40
TOKEN = "ghp_test_token"
CHECKS = f"/repos/octo/widgets/commits/{SHA}/check-runs"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=(TOKEN,)) as server:
        server.add_check(SHA, "tests", [(0, "completed", "success")])
        yield server


def client_for(github: FakeGitHub, gate: RateGate | None = None) -> ForgeClient:
    return ForgeClient(
        github.api_url,
        auth=lambda: {"Authorization": f"Bearer {TOKEN}"},
        backoff=0.05,
        gate=gate if gate is not None else RateGate(),
    )


def test_a_wait_past_the_deadline_still_holds_the_next_request(github: FakeGitHub) -> None:
    client = client_for(github)
    github.limit_next("429", wait=2)
    client.deadline = client.clock() + 1
    with pytest.raises(RateLimited):
        client.request("GET", CHECKS)
    # the caller gave up on this request; the forge's wait is not over for the next one
    with pytest.raises(RateLimited, match="past the time left"):
        client.request("GET", CHECKS)
    client.deadline = None
    assert client.request("GET", CHECKS).status == 200
    assert github.early == []
    assert [r.status for r in github.requests] == [429, 200]


def test_a_concurrent_request_waits_for_the_limit_another_one_hit(github: FakeGitHub) -> None:
    gate = RateGate()
    first, second = client_for(github, gate), client_for(github, gate)
    github.limit_next("secondary", wait=2)
    results: list[int] = []
    waiting = threading.Thread(target=lambda: results.append(first.request("GET", CHECKS).status))
    waiting.start()
    while not github.requests:
        time.sleep(0.01)
    # the refusal is on its way to `first`; `second` knows nothing of it but the gate
    while gate.delay() == 0:
        time.sleep(0.01)
    results.append(second.request("GET", CHECKS).status)
    waiting.join()
    assert results == [200, 200]
    assert github.early == []


def test_control_clients_without_a_shared_gate_hit_the_forge_inside_its_wait(
    github: FakeGitHub,
) -> None:
    first, second = client_for(github), client_for(github)
    github.limit_next("secondary", wait=2)
    with pytest.raises(RateLimited):
        first.deadline = first.clock() + 1
        first.request("GET", CHECKS)
    second.request("GET", CHECKS, ok=(200, 429))
    assert len(github.early) == 1


def test_clients_of_one_api_share_its_gate_by_default(github: FakeGitHub) -> None:
    a = ForgeClient(github.api_url)
    b = ForgeClient(github.api_url + "/")
    assert a.gate is b.gate
    assert a.with_auth({"Authorization": "Bearer x"}).gate is a.gate
    assert ForgeClient("http://127.0.0.1:9").gate is not a.gate


def test_an_exhausted_limit_on_a_success_holds_until_its_reset(github: FakeGitHub) -> None:
    client = client_for(github)
    github.exhaust_next(wait=2)
    assert client.request("GET", CHECKS).status == 200
    assert client.gate.delay() > 0.5
    assert client.request("GET", CHECKS).status == 200
    assert github.early == []


def test_the_ci_goal_after_a_rate_limit_sends_nothing_early(
    github: FakeGitHub, tmp_path: Path
) -> None:
    """The run's goal gave up on a long wait; its next check must still wait it out."""
    session = open_forge_session(
        provider="github",
        secret=TOKEN,
        remote_url="https://github.com/octo/widgets.git",
        api_url=github.api_url,
        environ={},
        client_options={"backoff": 0.05, "rate_limit_wait": 0.2},
    )
    github.add_check(SHA, "lint", [(0, "completed", "failure")])

    def evaluate(timeout: float) -> str:
        verifier = CIVerifier(
            CIGoalConfig(provider="github", required_checks=(), timeout=timeout),
            timing=CITiming(poll=0.05, max_poll=0.2, grace=1.0),
        )
        ctx = GoalContext(
            workdir=tmp_path, env={}, run_dir=tmp_path, iteration=1, head_sha=SHA, forge=session
        )
        return verifier.evaluate(ctx).summary

    github.limit_next("429", wait=3)
    assert "past the time left" in evaluate(timeout=1.5)
    sent = len(github.requests)
    # an iteration later, with the wait not over: the goal gives up again without asking
    assert "past the time left" in evaluate(timeout=0.5)
    assert len(github.requests) == sent
    # with time enough, it waits the rest out, then asks
    assert "not green" in evaluate(timeout=10)
    assert github.early == []
