"""CI on GitHub: check runs (``filter=latest``) plus the combined commit status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from outloop_cli.forges import github as api
from outloop_cli.forges.http import ForgeError
from outloop_cli.forges.session import ForgeSession
from outloop_cli.goals.ci.provider import Check, CheckDetail, CISnapshot

# bounds on what one failing check contributes to the agent's feedback
MAX_ANNOTATIONS = 20
SUMMARY_CHARS = 2000
LOG_LINES = 60
LOG_CHARS = 6000
MAX_DETAILED = 5

# check-run statuses that are not finished: queued, in_progress, waiting, requested, pending
_STATUS_STATE = {"success": "success", "failure": "failure", "error": "error"}


class GitHubChecks:
    def __init__(self, session: ForgeSession) -> None:
        self.session = session
        self.client = session.client
        self.repo = session.repo

    @property
    def label(self) -> str:
        return f"GitHub checks on {self.repo.path}"

    def snapshot(self, sha: str) -> CISnapshot:
        runs = api.check_runs(self.client, self.repo, sha)
        try:
            combined = api.combined_status(self.client, self.repo, sha)
        except ForgeError as exc:
            # no commit statuses where the server has no such endpoint or commit yet
            if exc.status not in (404, 422):
                raise
            combined = {}
        checks = [_from_check_run(run) for run in runs]
        for status in combined.get("statuses") or []:
            checks.append(_from_status(status))
        overall = combined.get("state") if combined.get("statuses") else None
        return CISnapshot(tuple(checks), overall=overall)

    def details(self, sha: str, failing: Sequence[Check]) -> list[CheckDetail]:
        found: list[CheckDetail] = []
        for check in failing[:MAX_DETAILED]:
            if check.kind != "check run":
                found.append(CheckDetail(check, summary=check.description))
                continue
            found.append(self._check_run_detail(check))
        found.extend(CheckDetail(c) for c in failing[MAX_DETAILED:])
        return found

    def _check_run_detail(self, check: Check) -> CheckDetail:
        run_id = int(check.ref)
        try:
            run = self.client.get_json(f"/repos/{self.repo.path}/check-runs/{run_id}")
        except ForgeError:
            run = {}
        output = (run or {}).get("output") or {}
        summary = "\n\n".join(
            part for part in (output.get("summary") or "", output.get("text") or "") if part
        )
        notes: list[str] = []
        if output.get("annotations_count"):
            try:
                for ann in api.check_run_annotations(
                    self.client, self.repo, run_id, limit=MAX_ANNOTATIONS
                ):
                    notes.append(_annotation_line(ann))
            except ForgeError:
                pass
        log = ""
        app = ((run or {}).get("app") or {}).get("slug")
        if app == "github-actions":
            # an Actions check run's id is its job's id
            try:
                text = api.job_log(self.client, self.repo, run_id)
            except ForgeError:
                text = None
            if text:
                log = _log_excerpt(text)
        return CheckDetail(
            check,
            title=str(output.get("title") or ""),
            summary=summary[:SUMMARY_CHARS],
            annotations=tuple(notes),
            log_excerpt=log,
        )


def _from_check_run(run: dict[str, Any]) -> Check:
    completed = run.get("status") == "completed"
    conclusion = run.get("conclusion")
    return Check(
        name=str(run.get("name") or "?"),
        state="completed" if completed else "pending",
        conclusion=str(conclusion).lower() if completed and conclusion else None,
        kind="check run",
        url=run.get("html_url") or run.get("details_url"),
        ref=str(run.get("id", "")),
        description=str(((run.get("output") or {}).get("title")) or ""),
    )


def _from_status(status: dict[str, Any]) -> Check:
    state = str(status.get("state") or "pending")
    return Check(
        name=str(status.get("context") or "default"),
        state="pending" if state == "pending" else "completed",
        conclusion=_STATUS_STATE.get(state, state) if state != "pending" else None,
        kind="status",
        url=status.get("target_url"),
        ref=str(status.get("id", "")),
        description=str(status.get("description") or ""),
    )


def _annotation_line(ann: dict[str, Any]) -> str:
    where = str(ann.get("path") or "")
    if ann.get("start_line"):
        where += f":{ann['start_line']}"
    level = ann.get("annotation_level") or "notice"
    title = ann.get("title") or ""
    message = " ".join(str(ann.get("message") or "").split())[:400]
    head = f"{where}: " if where else ""
    return f"{head}{level}: {title + ' — ' if title else ''}{message}"


def _log_excerpt(text: str) -> str:
    """The end of a job log, where the failure usually is, with timestamps dropped."""
    lines = []
    for line in text.splitlines():
        # Actions prefixes every line with an ISO timestamp
        head, _, rest = line.partition(" ")
        if len(head) >= 20 and head[:4].isdigit() and "T" in head:
            line = rest
        lines.append(line)
    error_at = max((i for i, ln in enumerate(lines) if "##[error]" in ln), default=None)
    if error_at is not None:
        start = max(0, error_at - LOG_LINES + 5)
        kept = lines[start : error_at + 5]
    else:
        kept = lines[-LOG_LINES:]
    return "\n".join(kept)[-LOG_CHARS:]
