"""The GitLab REST (v4) calls outloop makes, as plain functions over a ``ForgeClient``."""

from __future__ import annotations

import urllib.parse
from typing import Any

from outloop_cli.forges.http import ForgeClient, ForgeError
from outloop_cli.forges.remote import RemoteRepo

__all__ = [
    "create_merge_request",
    "default_branch",
    "find_merge_request",
    "job_trace",
    "pipeline_jobs",
    "pipelines_for_sha",
    "project_id",
    "update_merge_request",
]

PER_PAGE = 100


def project_id(repo: RemoteRepo) -> str:
    """GitLab takes ``group/sub/project`` URL-encoded wherever it takes a project id."""
    return urllib.parse.quote(repo.path, safe="")


def pipelines_for_sha(client: ForgeClient, repo: RemoteRepo, sha: str) -> list[dict[str, Any]]:
    """Pipelines on ``sha``, newest first."""
    return list(
        client.get_json(
            f"/projects/{project_id(repo)}/pipelines",
            {"sha": sha, "order_by": "id", "sort": "desc", "per_page": 20},
        )
        or []
    )


def pipeline_jobs(client: ForgeClient, repo: RemoteRepo, pipeline_id: int) -> list[dict[str, Any]]:
    """The pipeline's jobs (latest attempts only: retried ones are left out by default)."""
    jobs: list[dict[str, Any]] = []
    for page in client.pages(
        f"/projects/{project_id(repo)}/pipelines/{pipeline_id}/jobs", {"per_page": PER_PAGE}
    ):
        jobs.extend(page.json() or [])
    return jobs


def job_trace(client: ForgeClient, repo: RemoteRepo, job_id: int) -> str | None:
    try:
        response = client.request(
            "GET", f"/projects/{project_id(repo)}/jobs/{job_id}/trace", accept="text/plain"
        )
    except ForgeError as exc:
        if exc.status in (403, 404):
            return None
        raise
    return response.body.decode("utf-8", errors="replace")


# -- merge requests --------------------------------------------------------------


def find_merge_request(client: ForgeClient, repo: RemoteRepo, branch: str) -> dict[str, Any] | None:
    found = client.request(
        "GET",
        f"/projects/{project_id(repo)}/merge_requests",
        params={"source_branch": branch, "state": "opened", "per_page": 10},
    ).json()
    for mr in found or []:
        if mr.get("source_branch") == branch:
            return dict(mr)
    return None


def create_merge_request(
    client: ForgeClient, repo: RemoteRepo, *, source: str, target: str, title: str, description: str
) -> dict[str, Any]:
    created = client.request(
        "POST",
        f"/projects/{project_id(repo)}/merge_requests",
        json_body={
            "source_branch": source,
            "target_branch": target,
            "title": title,
            "description": description,
        },
        ok=(201,),
    ).json()
    return dict(created)


def update_merge_request(
    client: ForgeClient, repo: RemoteRepo, iid: int, *, title: str, description: str
) -> dict[str, Any]:
    updated = client.request(
        "PUT",
        f"/projects/{project_id(repo)}/merge_requests/{iid}",
        json_body={"title": title, "description": description},
    ).json()
    return dict(updated)


def default_branch(client: ForgeClient, repo: RemoteRepo) -> str | None:
    data = client.get_json(f"/projects/{project_id(repo)}", conditional=False) or {}
    branch = data.get("default_branch")
    return branch if isinstance(branch, str) and branch else None
