"""The CI goal's second provider: GitLab pipelines, against a GitLab-shaped API on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli.config.model import CIGoalConfig
from outloop_cli.forges.session import ForgeSession, open_forge_session
from outloop_cli.goals.base import GoalContext
from outloop_cli.goals.ci.verifier import CITiming, CIVerifier
from outloop_cli.store.records import GoalResult
from tests.fakes.gitlab_server import FakeGitLab

SHA = "c" * 40
FAST = CITiming(poll=0.05, max_poll=0.2, grace=1.0)


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


def session_for(server: FakeGitLab, token: str = "glpat-test-token") -> ForgeSession:
    return open_forge_session(
        provider="gitlab",
        secret=token,
        remote_url="git@gitlab.example.com:group/sub/widgets.git",
        environ={"CI_API_V4_URL": server.api_url},
        client_options={"backoff": 0.05},
    )


def evaluate(
    server: FakeGitLab, tmp_path: Path, *, required: tuple[str, ...] = (), timeout: float = 10
) -> GoalResult:
    verifier = CIVerifier(
        CIGoalConfig(provider="gitlab", required_checks=required, timeout=timeout), timing=FAST
    )
    return verifier.evaluate(
        GoalContext(
            workdir=tmp_path,
            env={},
            run_dir=tmp_path,
            iteration=1,
            head_sha=SHA,
            forge=session_for(server),
        )
    )


def test_pipeline_that_turns_green(gitlab: FakeGitLab, tmp_path: Path) -> None:
    pipeline = gitlab.add_pipeline(SHA, appear_after=0.2)
    gitlab.add_job(
        pipeline, "build", [(0, "pending"), (0.3, "running"), (0.5, "success")], stage="build"
    )
    gitlab.add_job(pipeline, "test", [(0, "created"), (0.6, "running"), (0.8, "success")])
    gitlab.add_job(pipeline, "lint", [(0, "failed")], allow_failure=True)
    gitlab.add_job(pipeline, "deploy", [(0, "manual")], allow_failure=True)
    result = evaluate(gitlab, tmp_path)
    assert result.met, result.summary
    assert result.summary.startswith("4 check(s) green")
    paths = [r[1] for r in gitlab.requests]
    assert "/api/v4/projects/group%2Fsub%2Fwidgets/pipelines" in paths
    assert all(r[2]["private-token"] == "glpat-test-token" for r in gitlab.requests)


def test_failed_job_feedback_carries_the_trace(gitlab: FakeGitLab, tmp_path: Path) -> None:
    pipeline = gitlab.add_pipeline(SHA)
    trace = "\n".join(f"line {i}" for i in range(300)) + "\nERROR: test_add failed"
    gitlab.add_job(pipeline, "test", [(0, "running"), (0.2, "failed")], trace=trace)
    gitlab.add_job(pipeline, "build", [(0, "success")])
    result = evaluate(gitlab, tmp_path)
    assert not result.met
    assert result.failing == ["test (failure)"]
    assert "ERROR: test_add failed" in result.output_tail
    assert "line 299" in result.output_tail and "line 10\n" not in result.output_tail
    assert "stage test, script_failure" in result.output_tail


def test_a_retried_job_replaces_the_failed_attempt(gitlab: FakeGitLab, tmp_path: Path) -> None:
    pipeline = gitlab.add_pipeline(SHA)
    # GitLab's `retry:` creates the new attempt as the old one fails; the pipeline keeps running
    gitlab.add_job(pipeline, "test", [(0, "running"), (0.2, "failed")])
    gitlab.add_job(pipeline, "test", [(0.2, "pending"), (0.5, "success")])
    result = evaluate(gitlab, tmp_path)
    assert result.met, result.summary


def test_blocking_manual_job_and_cancelled_jobs_are_not_green(
    gitlab: FakeGitLab, tmp_path: Path
) -> None:
    pipeline = gitlab.add_pipeline(SHA)
    gitlab.add_job(pipeline, "approve", [(0, "manual")])
    gitlab.add_job(pipeline, "e2e", [(0, "canceled")])
    result = evaluate(gitlab, tmp_path)
    assert not result.met
    assert sorted(result.failing) == ["approve (action_required)", "e2e (cancelled)"]


def test_a_pipeline_that_failed_before_any_job(gitlab: FakeGitLab, tmp_path: Path) -> None:
    gitlab.add_pipeline(SHA, status="failed")
    result = evaluate(gitlab, tmp_path)
    assert not result.met and result.failing == ["pipeline (failure)"]


def test_no_pipeline_within_grace(gitlab: FakeGitLab, tmp_path: Path) -> None:
    result = evaluate(gitlab, tmp_path)
    assert not result.met
    assert "no checks appeared" in result.summary and "no pipeline" in result.summary


def test_rate_limit_429_is_waited_out(gitlab: FakeGitLab, tmp_path: Path) -> None:
    pipeline = gitlab.add_pipeline(SHA)
    gitlab.add_job(pipeline, "test", [(0, "success")])
    gitlab.limit_next(1)
    started = time.monotonic()
    assert evaluate(gitlab, tmp_path).met
    assert time.monotonic() - started >= 1.0


def test_required_jobs(gitlab: FakeGitLab, tmp_path: Path) -> None:
    pipeline = gitlab.add_pipeline(SHA)
    gitlab.add_job(pipeline, "test", [(0, "success")])
    gitlab.add_job(pipeline, "flaky", [(0, "failed")])
    assert evaluate(gitlab, tmp_path, required=("test",)).met
    assert not evaluate(gitlab, tmp_path, required=("flaky",)).met


def test_many_jobs_are_paginated(gitlab: FakeGitLab, tmp_path: Path) -> None:
    pipeline = gitlab.add_pipeline(SHA)
    for i in range(120):
        gitlab.add_job(pipeline, f"job-{i:03d}", [(0, "success")])
    result = evaluate(gitlab, tmp_path)
    assert result.met and result.tests is not None and result.tests.total == 120
