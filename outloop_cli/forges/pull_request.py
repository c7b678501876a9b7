"""A pull request for a run's branch: opened once, updated as the run goes, draft until the goal is met.

The body is built from the run record alone: the goal, the stop reason, one
row per iteration (commit, verdict, failing count, duration, cost) and
links. GitHub caps a body at 65,536 characters, so rows are dropped from the
middle (the start shows where it began, the end where it got to) to fit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from outloop_cli.errors import UsageError
from outloop_cli.forges import github as gh
from outloop_cli.forges.session import ForgeSession
from outloop_cli.store.records import IterationRecord, RunRecord, RunState
from outloop_cli.timefmt import format_seconds

__all__ = ["PullRequestInfo", "html_base_url", "pr_title", "publish_pull_request", "render_pr_body"]

MAX_BODY_CHARS = 60_000
MARKER = "<!-- outloop:run -->"
_CELL_RE = re.compile(r"([\\`*_\[\]<>|~])")


@dataclass(frozen=True)
class PullRequestInfo:
    """The pull request a run opened or found: number, web URL, whether it is new, whether a draft."""

    number: int
    url: str
    created: bool
    draft: bool


def html_base_url(api_url: str) -> str:
    """``https://api.github.com`` → ``https://github.com``; ``https://h/api/v3`` → ``https://h``."""
    base = api_url.rstrip("/")
    if base == "https://api.github.com":
        return "https://github.com"
    for suffix in ("/api/v3", "/api/v4"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _cell(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _CELL_RE.sub(r"\\\1", flat)


def pr_title(record: RunRecord) -> str:
    what = record.description or record.goal_label
    state = (
        "goal met"
        if record.goal_met
        else "running"
        if record.state is RunState.RUNNING
        else "goal not met"
    )
    return " ".join(f"outloop({record.loop}): {what} — {state}".split())[:250]


def _verdict(it: IterationRecord) -> str:
    if it.goal is None:
        return "not checked"
    return "✅ met" if it.goal.met else "❌ not met"


def _row(it: IterationRecord, repo_url: str) -> str:
    commit = f"[`{it.commit[:10]}`]({repo_url}/commit/{it.commit})" if it.commit else "—"
    failing = "—"
    if it.goal is not None and not it.goal.met:
        failing = str(it.goal.tests.failing if it.goal.tests else len(it.goal.failing))
    elif it.goal is not None:
        failing = "0"
    cost = (
        f"${it.agent.cost_usd:.2f}"
        if it.agent is not None and it.agent.cost_usd is not None
        else "—"
    )
    summary = _cell(it.goal.summary, 80) if it.goal is not None else ""
    label = "baseline" if it.n == 0 else str(it.n)
    return (
        f"| {label} | {commit} | {_verdict(it)} | {failing} | "
        f"{format_seconds(it.duration)} | {cost} | {summary} |"
    )


def render_pr_body(
    record: RunRecord, *, repo_url: str, environ: Mapping[str, str] | None = None
) -> str:
    env = os.environ if environ is None else environ
    stop = record.stop_reason.value if record.stop_reason else record.state.value
    head = [
        MARKER,
        f"**outloop** loop `{_cell(record.loop)}`, run `{record.run_id}`",
        "",
        f"- **Goal:** {_cell(record.goal_label, 300)}",
        f"- **Status:** {'✅ goal met' if record.goal_met else stop}"
        + (f" — {_cell(record.stop_detail, 300)}" if record.stop_detail else ""),
        f"- **Agent:** {_cell(record.agent_label, 200)}",
        f"- **Branch:** [`{record.branch}`]({repo_url}/tree/{record.branch}) from "
        f"[`{record.base_commit[:10]}`]({repo_url}/commit/{record.base_commit})",
    ]
    if record.cost_usd is not None:
        head.append(f"- **Cost:** ${record.cost_usd:.2f}")
    server, run_id = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_RUN_ID")
    repository = env.get("GITHUB_REPOSITORY")
    if server and run_id and repository:
        head.append(f"- **Workflow run:** {server}/{repository}/actions/runs/{run_id}")
    if record.description:
        head += ["", f"> {_cell(record.description, 500)}"]
    table = [
        "",
        "| Iteration | Commit | Goal | Failing | Duration | Cost | Result |",
        "|--:|---|---|--:|--:|--:|---|",
    ]
    rows = [_row(it, repo_url) for it in record.iterations]
    foot = [
        "",
        "Draft until the goal is met. Each iteration is one commit on the branch; "
        "`outloop show " + record.run_id + "` has the details.",
    ]
    fixed = sum(len(line) + 1 for line in head + table + foot)
    budget = MAX_BODY_CHARS - fixed - 200
    if sum(len(r) + 1 for r in rows) > budget:
        keep_head = rows[:3]
        tail: list[str] = []
        used = sum(len(r) + 1 for r in keep_head)
        for row in reversed(rows[3:]):
            if used + len(row) + 1 > budget:
                break
            tail.insert(0, row)
            used += len(row) + 1
        left_out = len(rows) - len(keep_head) - len(tail)
        rows = [*keep_head, f"| … | {left_out} iterations not shown | | | | | |", *tail]
    return "\n".join(head + table + rows + foot) + "\n"


def publish_pull_request(
    session: ForgeSession,
    record: RunRecord,
    *,
    base: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> PullRequestInfo:
    """Open the run branch's pull request, or update the one already open; set its draft state."""
    if session.provider == "gitlab":
        return _publish_merge_request(session, record, base=base, environ=environ)
    repo_url = f"{html_base_url(session.api_url)}/{session.repo.path}"
    body = render_pr_body(record, repo_url=repo_url, environ=environ)
    title = pr_title(record)
    want_draft = not record.goal_met
    client = session.client
    existing = gh.find_pull(client, session.repo, record.branch)
    if existing is None:
        target = base or _default_branch(session)
        created = gh.create_pull(
            client,
            session.repo,
            head=record.branch,
            base=target,
            title=title,
            body=body,
            draft=want_draft,
        )
        return PullRequestInfo(
            int(created["number"]),
            str(created.get("html_url", "")),
            True,
            bool(created.get("draft")),
        )
    updated = gh.update_pull(client, session.repo, int(existing["number"]), title=title, body=body)
    draft = bool(updated.get("draft", existing.get("draft")))
    if draft != want_draft and existing.get("node_id"):
        gh.set_draft(client, session.api_url, str(existing["node_id"]), draft=want_draft)
        draft = want_draft
    return PullRequestInfo(int(updated["number"]), str(updated.get("html_url", "")), False, draft)


def _default_branch(session: ForgeSession) -> str:
    data = session.client.get_json(f"/repos/{session.repo.path}", conditional=False) or {}
    branch = data.get("default_branch")
    if not isinstance(branch, str) or not branch:
        raise UsageError(
            f"could not tell the default branch of {session.repo.path}",
            hint="name the base branch with --base",
        )
    return branch


DRAFT_PREFIX = "Draft: "


def _publish_merge_request(
    session: ForgeSession,
    record: RunRecord,
    *,
    base: str | None,
    environ: Mapping[str, str] | None,
) -> PullRequestInfo:
    """GitLab: a merge request is a draft while its title starts with ``Draft:``."""
    from outloop_cli.forges import gitlab as gl

    # GitLab's web paths put commits and trees under /-/
    repo_url = f"{html_base_url(session.api_url)}/{session.repo.path}/-"
    body = render_pr_body(record, repo_url=repo_url, environ=environ)
    want_draft = not record.goal_met
    title = (DRAFT_PREFIX if want_draft else "") + pr_title(record)
    client = session.client
    existing = gl.find_merge_request(client, session.repo, record.branch)
    if existing is None:
        target = base or gl.default_branch(client, session.repo)
        if target is None:
            raise UsageError(
                f"could not tell the default branch of {session.repo.path}",
                hint="name the target branch with --base",
            )
        created = gl.create_merge_request(
            client, session.repo, source=record.branch, target=target, title=title, description=body
        )
        return PullRequestInfo(
            int(created["iid"]), str(created.get("web_url", "")), True, want_draft
        )
    updated = gl.update_merge_request(
        client, session.repo, int(existing["iid"]), title=title, description=body
    )
    return PullRequestInfo(int(updated["iid"]), str(updated.get("web_url", "")), False, want_draft)
