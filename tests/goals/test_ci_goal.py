"""The CI goal against a GitHub-shaped API on 127.0.0.1, with check timelines that change over time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli.config.model import CIGoalConfig, GoalConfig
from outloop_cli.errors import CouldNotRun
from outloop_cli.forges.http import ForgeAuthError
from outloop_cli.forges.session import ForgeSession, open_forge_session
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.ci.provider import Check, CISnapshot, judge
from outloop_cli.goals.ci.verifier import CITiming, CIVerifier
from outloop_cli.goals.registry import make_verifier
from outloop_cli.store.records import GoalResult
from tests.fakes.github_server import FakeGitHub

SHA = "a" * 40
TOKEN = "ghp_test_token"
FAST = CITiming(poll=0.05, max_poll=0.2, grace=1.0)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


def session_for(server: FakeGitHub, token: str = TOKEN, **kw: object) -> ForgeSession:
    return open_forge_session(
        provider="github",
        secret=token,
        remote_url="https://github.com/octo/widgets.git",
        api_url=server.api_url,
        environ={},
        client_options={"backoff": 0.05, "rate_limit_wait": 0.2},
        **kw,  # type: ignore[arg-type]
    )


def evaluate(
    server: FakeGitHub,
    tmp_path: Path,
    *,
    required: tuple[str, ...] = (),
    timeout: float = 10.0,
    timing: CITiming = FAST,
    session: ForgeSession | None = None,
    cancel: threading.Event | None = None,
    transform: object = None,
) -> GoalResult:
    ci = CIGoalConfig(provider="github", required_checks=required, timeout=timeout)
    verifier = CIVerifier(ci, timing=timing)
    ctx = GoalContext(
        workdir=tmp_path,
        env={},
        run_dir=tmp_path,
        iteration=1,
        head_sha=SHA,
        forge=session or session_for(server),
        cancel=cancel,
        transform=transform,  # type: ignore[arg-type]
    )
    return verifier.evaluate(ctx)


# -- the verdict rules ---------------------------------------------------------------


def _c(name: str, conclusion: str | None, state: str = "completed") -> Check:
    return Check(name=name, state=state, conclusion=conclusion)


@pytest.mark.parametrize(
    ("checks", "state"),
    [
        ((), "pending"),
        ((_c("a", "success"),), "green"),
        ((_c("a", "success"), _c("b", "neutral"), _c("c", "skipped")), "green"),
        ((_c("a", "success"), _c("b", None, "pending")), "pending"),
        ((_c("a", "failure"), _c("b", None, "pending")), "pending"),
        ((_c("a", "success"), _c("b", "failure")), "red"),
    ]
    + [
        ((_c("a", "success"), _c("b", bad)), "red")
        for bad in (
            "cancelled",
            "stale",
            "timed_out",
            "action_required",
            "startup_failure",
            "error",
        )
    ],
)
def test_verdict_rules(checks: tuple[Check, ...], state: str) -> None:
    assert judge(CISnapshot(checks)).state == state


def test_required_checks_limit_the_verdict() -> None:
    snap = CISnapshot((_c("tests", "success"), _c("lint", "failure")))
    assert judge(snap, ["tests"]).state == "green"
    assert judge(snap, ["lint"]).state == "red"
    missing = judge(snap, ["tests", "docs"])
    assert missing.state == "pending" and missing.missing == ("docs",)


def test_make_verifier_builds_the_ci_verifier() -> None:
    verifier = make_verifier(GoalConfig(ci=CIGoalConfig(repo="octo/widgets")))
    assert isinstance(verifier, CIVerifier)
    assert verifier.label == "CI: github octo/widgets"


def test_without_a_pushed_sha_it_cannot_run(tmp_path: Path) -> None:
    verifier = CIVerifier(CIGoalConfig(), timing=FAST)
    with pytest.raises(CouldNotRun, match="pushed commit"):
        verifier.evaluate(GoalContext(workdir=tmp_path, env={}, run_dir=tmp_path, iteration=0))


# -- waiting on a live API -------------------------------------------------------------


def test_late_checks_then_green_with_conditional_requests(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.add_check(
        SHA, "tests", [(0.3, "queued"), (0.5, "in_progress"), (0.8, "completed", "success")]
    )
    github.add_check(SHA, "lint", [(0.2, "in_progress"), (0.4, "completed", "neutral")])
    github.add_status(SHA, "ci/legacy", [(0.1, "pending"), (0.6, "success")])
    result = evaluate(github, tmp_path)
    assert result.met, result.summary
    assert result.summary.startswith("3 check(s) green on aaaaaaaaaa")
    assert result.tests is not None and result.tests.passed == 3
    polls = github.api_requests("/check-runs")
    assert all(r.query["filter"] == ["latest"] for r in polls)
    # unchanged answers were served as 304 to our If-None-Match
    assert any("if-none-match" in r.headers for r in polls)
    assert any(r.status == 304 for r in polls)
    # the API version and media type GitHub documents
    assert polls[0].headers["accept"] == "application/vnd.github+json"
    assert polls[0].headers["x-github-api-version"] == "2022-11-28"
    assert polls[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_failing_check_feedback_has_summary_annotations_and_log(
    github: FakeGitHub, tmp_path: Path
) -> None:
    log = "\n".join(
        [f"2026-01-01T00:00:{i:02d}.0000000Z step {i}" for i in range(200)]
        + ["2026-01-01T00:01:00.0000000Z ##[error]Process completed with exit code 1."]
    )
    github.add_check(
        SHA,
        "tests",
        [(0, "in_progress"), (0.2, "completed", "failure")],
        output={
            "title": "2 tests failed",
            "summary": "test_add and test_sub failed",
            "text": "details",
        },
        annotations=[
            {
                "path": "calc.py",
                "start_line": 3,
                "end_line": 3,
                "annotation_level": "failure",
                "title": "test_add",
                "message": "assert 1 == 2",
            }
        ],
        log=log,
    )
    github.add_check(SHA, "lint", [(0, "completed", "success")])
    result = evaluate(github, tmp_path)
    assert not result.met
    assert result.exit_code == 1
    assert result.failing == ["tests (failure)"]
    assert "1 of 2 check(s) not green" in result.summary
    feedback = result.output_tail
    assert "check run `tests`: failure" in feedback
    assert "test_add and test_sub failed" in feedback
    assert "calc.py:3: failure: test_add — assert 1 == 2" in feedback
    assert "##[error]Process completed with exit code 1." in feedback
    assert "step 199" in feedback and "step 10 " not in feedback
    # the log download followed GitHub's redirect without carrying the token
    assert github.blob_requests and "authorization" not in github.blob_requests[0].headers
    assert result.log is not None and (tmp_path / result.log).read_text().count("tests") >= 1
    assert [c.outcome for c in result.cases] == ["failed", "passed"]


@pytest.mark.parametrize(
    "bad", ["cancelled", "stale", "timed_out", "action_required", "startup_failure"]
)
def test_non_green_conclusions_fail(github: FakeGitHub, tmp_path: Path, bad: str) -> None:
    github.add_check(SHA, "build", [(0, "completed", bad)])
    result = evaluate(github, tmp_path)
    assert not result.met
    assert result.failing == [f"build ({bad})"]


def test_a_rerun_replaces_the_failed_attempt(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "in_progress"), (0.1, "completed", "failure")])
    # GitHub's rerun: a new check run with the same name, shown by filter=latest
    github.add_check(SHA, "tests", [(0.12, "queued"), (0.6, "completed", "success")])
    result = evaluate(github, tmp_path, timing=CITiming(poll=0.1, max_poll=0.1, grace=1))
    assert result.met, result.summary


def test_failed_combined_status_is_not_green(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    github.add_status(SHA, "deploy/preview", [(0, "error")], description="preview failed")
    result = evaluate(github, tmp_path)
    assert not result.met
    assert result.failing == ["deploy/preview (error)"]
    assert "preview failed" in result.output_tail


def test_statuses_alone_count_as_checks(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_status(SHA, "ci/jenkins", [(0, "pending"), (0.2, "success")])
    assert evaluate(github, tmp_path).met


def test_required_checks_ignore_others(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    github.add_check(SHA, "flaky-e2e", [(0, "completed", "failure")])
    result = evaluate(github, tmp_path, required=("tests",))
    assert result.met, result.summary
    assert "1 check(s) outside required_checks ignored" in result.summary


def test_a_required_check_that_never_reports_times_out(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    result = evaluate(github, tmp_path, required=("tests", "deploy"), timeout=0.6)
    assert not result.met and result.timed_out
    assert "deploy (never reported)" in result.failing
    assert "still waiting for deploy" in result.summary


def test_no_checks_within_the_grace_period(github: FakeGitHub, tmp_path: Path) -> None:
    started = time.monotonic()
    result = evaluate(github, tmp_path, timing=CITiming(poll=0.05, max_poll=0.1, grace=0.4))
    assert time.monotonic() - started < 3
    assert not result.met
    assert result.summary.startswith("no checks appeared on aaaaaaaaaa within 0.4s")
    assert "No CI checks were reported" in result.output_tail


def test_no_checks_with_actions_token_explains_why(github: FakeGitHub, tmp_path: Path) -> None:
    github.tokens.add("ghs_actions_token")
    session = open_forge_session(
        provider="github",
        secret="ghs_actions_token",
        remote_url="https://github.com/octo/widgets",
        api_url=github.api_url,
        environ={"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "ghs_actions_token"},
    )
    assert any("do not start new workflow runs" in w for w in session.warnings)
    result = evaluate(github, tmp_path, session=session, timing=CITiming(0.05, 0.1, 0.3))
    assert "is the GITHUB_TOKEN of this GitHub Actions job" in result.output_tail


def test_actions_token_warning_is_worded_by_certainty(github: FakeGitHub) -> None:
    def warnings(token: str, environ: dict[str, str]) -> list[str]:
        return open_forge_session(
            provider="github",
            secret=token,
            remote_url="https://github.com/octo/widgets",
            api_url=github.api_url,
            environ=environ,
        ).warnings

    actions = {"GITHUB_ACTIONS": "true"}
    assert "if it is the job's GITHUB_TOKEN" in warnings("ghs_minted_elsewhere", actions)[0]
    assert warnings("github_pat_abc", actions) == []
    assert warnings("ghs_anything", {}) == []


def test_a_check_that_never_completes_times_out(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "failure")])
    github.add_check(SHA, "hung", [(0, "in_progress")])
    started = time.monotonic()
    result = evaluate(github, tmp_path, timeout=0.8)
    assert 0.7 < time.monotonic() - started < 5
    assert not result.met and result.timed_out and result.exit_code is None
    assert "still waiting for hung" in result.summary
    assert "failed so far: tests (failure)" in result.summary
    assert set(result.failing) == {"tests (failure)", "hung (did not finish)"}


def test_rate_limits_are_waited_out(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    github.limit_next("secondary", wait=1)
    github.limit_next("429", wait=1)
    github.limit_next("primary", wait=1)
    started = time.monotonic()
    session = session_for(github)
    result = evaluate(github, tmp_path, session=session)
    waited = time.monotonic() - started
    assert result.met, result.summary
    # Retry-After 1s twice, then the reset time (whole seconds, so up to ~2s more)
    assert waited >= 2.0
    assert session.client.stats.rate_limited == 3
    statuses = [r.status for r in github.requests]
    assert statuses[:3] == [403, 429, 403]


def test_a_rate_limit_past_the_deadline_ends_the_wait(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "in_progress")])
    github.limit_next("primary", wait=600)
    started = time.monotonic()
    result = evaluate(github, tmp_path, timeout=5)
    assert time.monotonic() - started < 3
    assert not result.met
    assert "past the time left" in result.summary


def test_server_errors_are_retried(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    github.fail_next += [502, 503]
    assert evaluate(github, tmp_path).met


def test_pagination_reads_every_check(github: FakeGitHub, tmp_path: Path) -> None:
    for i in range(130):
        github.add_check(SHA, f"job-{i:03d}", [(0, "completed", "success")])
    github.add_check(SHA, "last", [(0, "completed", "failure")])
    result = evaluate(github, tmp_path)
    assert not result.met
    assert result.failing == ["last (failure)"]
    assert result.tests is not None and result.tests.total == 131
    pages = {
        r.query.get("page", ["1"])[0]
        for r in github.api_requests("/check-runs")
        if r.path.endswith("check-runs")
    }
    assert {"1", "2"} <= pages


def test_bad_token_stops_with_a_clear_error(github: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(ForgeAuthError, match="401") as info:
        evaluate(github, tmp_path, session=session_for(github, token="ghp_wrong"))
    assert "ghp_wrong" not in info.value.render()


def test_cancel_ends_the_wait(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "in_progress")])
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = evaluate(github, tmp_path, cancel=cancel)
    assert not result.met and "cancelled" in result.summary


def test_secrets_in_check_output_are_masked(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(
        SHA,
        "tests",
        [(0, "completed", "failure")],
        output={"summary": f"env dump: TOKEN={TOKEN} and hunter2"},
    )

    def mask(data: bytes) -> bytes:
        return data.replace(b"hunter2", b"***")

    result = evaluate(github, tmp_path, transform=mask)
    assert TOKEN not in result.output_tail and "hunter2" not in result.output_tail
    assert "TOKEN=*** and ***" in result.output_tail


def test_same_failure_gives_the_same_signature(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "failure")])
    first = evaluate(github, tmp_path)
    second = evaluate(github, tmp_path)
    assert first.signature == second.signature
    github.add_check(SHA, "lint", [(0, "completed", "failure")])
    assert evaluate(github, tmp_path).signature != first.signature


def test_enterprise_api_prefix(tmp_path: Path) -> None:
    with FakeGitHub(prefix="/api/v3") as ghe:
        ghe.add_check(SHA, "tests", [(0, "completed", "success")])
        session = open_forge_session(
            provider="github",
            secret=TOKEN,
            remote_url="https://ghe.example.com/octo/widgets.git",
            environ={"GITHUB_API_URL": ghe.api_url},
        )
        assert session.api_url.endswith("/api/v3")
        assert evaluate(ghe, tmp_path, session=session).met
        assert all(r.path.startswith("/api/v3/") for r in ghe.requests)


def test_a_long_burst_of_rate_limits_is_waited_out_within_the_deadline(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    for _ in range(8):
        github.limit_next("429", wait=0)
    result = evaluate(github, tmp_path, timeout=10)
    assert result.met, result.summary


def test_a_less_complete_server_still_gives_the_right_verdict(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.honour_filter = False
    github.link_headers = False
    github.status_endpoint = False
    for i in range(110):
        github.add_check(SHA, f"job-{i:03d}", [(0, "completed", "success")])
    github.add_check(SHA, "tests", [(0, "completed", "failure")])
    # the rerun that filter=latest would have shown alone
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    result = evaluate(github, tmp_path)
    assert result.met, result.summary
    assert result.tests is not None and result.tests.total == 111


def test_polling_slows_down_while_nothing_changes(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_check(SHA, "tests", [(0, "in_progress"), (2.0, "completed", "success")])
    result = evaluate(github, tmp_path, timing=CITiming(poll=0.05, max_poll=0.5, grace=1))
    assert result.met
    polls = [r for r in github.api_requests("/check-runs") if r.path.endswith("/check-runs")]
    # at a steady 0.05s this would be ~40 polls; growing by half each time it is ~10
    assert len(polls) <= 16, len(polls)
    unchanged = [r for r in polls if r.status == 304]
    assert len(unchanged) >= len(polls) - 3
    log = (tmp_path / "logs" / "iter-001-goal.log").read_text()
    assert "GitHub checks on octo/widgets, commit " + SHA in log
    assert "1 check(s), 1 running, verdict pending" in log
