"""The GitHub REST calls outloop makes, as plain functions over a ``ForgeClient``.

Shapes follow GitHub's documented REST API (``X-GitHub-Api-Version: 2022-11-28``);
GitHub Enterprise Server serves the same paths under ``https://HOST/api/v3``.
"""

from __future__ import annotations

from typing import Any

from outloop_cli.forges.http import ForgeClient, ForgeError
from outloop_cli.forges.remote import RemoteRepo, graphql_url_for

__all__ = [
    "check_run_annotations",
    "check_runs",
    "combined_status",
    "create_pull",
    "find_pull",
    "job_log",
    "set_draft",
    "update_pull",
]

PER_PAGE = 100


def check_runs(client: ForgeClient, repo: RemoteRepo, sha: str) -> list[dict[str, Any]]:
    """The latest check run of every check on ``sha`` (reruns replace earlier attempts)."""
    runs: list[dict[str, Any]] = []
    path = f"/repos/{repo.path}/commits/{sha}/check-runs"
    total = 0
    pages = 0
    last_size = 0
    for page in client.pages(path, {"filter": "latest", "per_page": PER_PAGE}):
        data = page.json() or {}
        batch = data.get("check_runs") or []
        runs.extend(batch)
        total = max(total, int(data.get("total_count") or 0))
        pages += 1
        last_size = len(batch)
    # a server that counts more than it links to: ask for the next pages by number
    while pages < 50 and len(runs) < total and last_size == PER_PAGE:
        pages += 1
        data = (
            client.get_json(path, {"filter": "latest", "per_page": PER_PAGE, "page": pages}) or {}
        )
        batch = data.get("check_runs") or []
        if not batch:
            break
        runs.extend(batch)
        last_size = len(batch)
    return latest_attempts(runs)


def latest_attempts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per check: the newest attempt (``filter=latest`` does this; a server may not)."""
    newest: dict[tuple[Any, Any, str], dict[str, Any]] = {}
    order: list[tuple[Any, Any, str]] = []
    for run in runs:
        key = (
            (run.get("check_suite") or {}).get("id"),
            (run.get("app") or {}).get("id"),
            str(run.get("name")),
        )
        if key not in newest:
            order.append(key)
            newest[key] = run
        elif _attempt_order(run) > _attempt_order(newest[key]):
            newest[key] = run
    return [newest[key] for key in order]


def _attempt_order(run: dict[str, Any]) -> tuple[str, int]:
    ident = run.get("id")
    return (str(run.get("started_at") or ""), ident if isinstance(ident, int) else 0)


def combined_status(client: ForgeClient, repo: RemoteRepo, sha: str) -> dict[str, Any]:
    """The combined commit status: ``state`` and every context's latest ``statuses``."""
    combined: dict[str, Any] = {}
    statuses: list[dict[str, Any]] = []
    for page in client.pages(f"/repos/{repo.path}/commits/{sha}/status", {"per_page": PER_PAGE}):
        data = page.json() or {}
        if not combined:
            combined = dict(data)
        statuses.extend(data.get("statuses") or [])
    combined["statuses"] = statuses
    return combined


def check_run_annotations(
    client: ForgeClient, repo: RemoteRepo, check_run_id: int, *, limit: int = 50
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in client.pages(
        f"/repos/{repo.path}/check-runs/{check_run_id}/annotations",
        {"per_page": min(PER_PAGE, limit)},
        max_pages=3,
    ):
        found.extend(page.json() or [])
        if len(found) >= limit:
            break
    return found[:limit]


def job_log(client: ForgeClient, repo: RemoteRepo, job_id: int) -> str | None:
    """An Actions job's plain-text log, or None where the API does not give one.

    GitHub answers with a redirect to a short-lived download URL; the token is
    not sent there (see ``ForgeClient``).
    """
    try:
        response = client.request(
            "GET",
            f"/repos/{repo.path}/actions/jobs/{job_id}/logs",
            follow_redirects=True,
            accept="application/vnd.github+json",
        )
    except ForgeError as exc:
        if exc.status in (403, 404, 410):
            return None
        raise
    return response.body.decode("utf-8", errors="replace")


# -- pull requests -------------------------------------------------------------


def find_pull(client: ForgeClient, repo: RemoteRepo, branch: str) -> dict[str, Any] | None:
    """The open pull request whose head is ``branch`` of this repository, if any."""
    pulls = client.request(
        "GET",
        f"/repos/{repo.path}/pulls",
        params={"head": f"{repo.owner}:{branch}", "state": "open", "per_page": 10},
    ).json()
    for pull in pulls or []:
        if (pull.get("head") or {}).get("ref") == branch:
            return dict(pull)
    return None


def create_pull(
    client: ForgeClient,
    repo: RemoteRepo,
    *,
    head: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
) -> dict[str, Any]:
    created = client.request(
        "POST",
        f"/repos/{repo.path}/pulls",
        json_body={"title": title, "head": head, "base": base, "body": body, "draft": draft},
        ok=(201,),
    ).json()
    return dict(created)


def update_pull(
    client: ForgeClient, repo: RemoteRepo, number: int, *, title: str, body: str
) -> dict[str, Any]:
    updated = client.request(
        "PATCH", f"/repos/{repo.path}/pulls/{number}", json_body={"title": title, "body": body}
    ).json()
    return dict(updated)


_READY = """mutation($id: ID!) {
  markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } }
}"""
_TO_DRAFT = """mutation($id: ID!) {
  convertPullRequestToDraft(input: {pullRequestId: $id}) { pullRequest { isDraft } }
}"""


def set_draft(client: ForgeClient, api_url: str, node_id: str, *, draft: bool) -> None:
    """REST cannot change a pull request's draft state; GraphQL's two mutations can."""
    response = client.request(
        "POST",
        graphql_url_for(api_url),
        json_body={"query": _TO_DRAFT if draft else _READY, "variables": {"id": node_id}},
    )
    data = response.json() or {}
    if data.get("errors"):
        message = "; ".join(str(e.get("message", e)) for e in data["errors"])[:300]
        raise ForgeError(f"GitHub refused to change the pull request's draft state: {message}")
