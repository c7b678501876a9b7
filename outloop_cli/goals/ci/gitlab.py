"""CI on GitLab: the newest pipeline on the commit and its jobs (latest attempts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from outloop_cli.forges import gitlab as api
from outloop_cli.forges.http import ForgeError
from outloop_cli.forges.session import ForgeSession
from outloop_cli.goals.ci.github import LOG_CHARS, LOG_LINES, MAX_DETAILED
from outloop_cli.goals.ci.provider import Check, CheckDetail, CISnapshot

_PENDING = {
    "created",
    "pending",
    "running",
    "preparing",
    "waiting_for_resource",
    "scheduled",
    "waiting_for_callback",
}
_DONE = {
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "canceling": "cancelled",
    "skipped": "skipped",
}


class GitLabPipelines:
    def __init__(self, session: ForgeSession) -> None:
        self.session = session
        self.client = session.client
        self.repo = session.repo

    @property
    def label(self) -> str:
        return f"GitLab pipelines on {self.repo.path}"

    def snapshot(self, sha: str) -> CISnapshot:
        pipelines = api.pipelines_for_sha(self.client, self.repo, sha)
        if not pipelines:
            return CISnapshot((), note="no pipeline on this commit yet")
        pipeline = pipelines[0]
        jobs = api.pipeline_jobs(self.client, self.repo, int(pipeline["id"]))
        checks = tuple(_from_job(job) for job in jobs)
        if not checks:
            # a pipeline that failed before creating jobs (a .gitlab-ci.yml error, say)
            checks = (_from_pipeline(pipeline),)
        overall = str(pipeline.get("status") or "")
        # jobs can all be finished while the pipeline is not: a retry is on its way
        return CISnapshot(checks, overall=overall, settled=overall not in _PENDING)

    def details(self, sha: str, failing: Sequence[Check]) -> list[CheckDetail]:
        found: list[CheckDetail] = []
        for i, check in enumerate(failing):
            log = ""
            if check.kind == "job" and i < MAX_DETAILED:
                try:
                    text = api.job_trace(self.client, self.repo, int(check.ref))
                except ForgeError:
                    text = None
                if text:
                    log = "\n".join(text.splitlines()[-LOG_LINES:])[-LOG_CHARS:]
            found.append(CheckDetail(check, summary=check.description, log_excerpt=log))
        return found


def _from_job(job: dict[str, Any]) -> Check:
    status = str(job.get("status") or "created")
    allow_failure = bool(job.get("allow_failure"))
    if status in _PENDING:
        state, conclusion = "pending", None
    elif status == "manual":
        # a manual job waits for a human; optional ones don't hold the pipeline up
        state, conclusion = "completed", "skipped" if allow_failure else "action_required"
    else:
        state, conclusion = "completed", _DONE.get(status, status)
        if conclusion == "failure" and allow_failure:
            conclusion = "neutral"
    stage = job.get("stage")
    return Check(
        name=str(job.get("name") or "?"),
        state=state,
        conclusion=conclusion,
        kind="job",
        url=job.get("web_url"),
        ref=str(job.get("id", "")),
        description=f"stage {stage}"
        + (f", {job['failure_reason']}" if job.get("failure_reason") else "")
        if stage
        else str(job.get("failure_reason") or ""),
    )


def _from_pipeline(pipeline: dict[str, Any]) -> Check:
    status = str(pipeline.get("status") or "created")
    pending = status in _PENDING
    return Check(
        name="pipeline",
        state="pending" if pending else "completed",
        conclusion=None if pending else _DONE.get(status, status),
        kind="pipeline",
        url=pipeline.get("web_url"),
        ref=str(pipeline.get("id", "")),
        description=str(pipeline.get("detailed_status", {}).get("text") or ""),
    )
