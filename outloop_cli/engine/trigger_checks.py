"""What a run a failed CI run started is told of it: that run's failed checks.

Read from the forge before the first turn, with the repository's forge token,
through the CI goal's own provider code.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from outloop_cli.safe_text import clean_text

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.triggers.event import TriggerEvent


# the failed checks a ci_failed run is told of: enough to act on, never a whole log
MAX_FAILED_CHECKS = 10
MAX_CHECK_TEXT = 4000


def with_failed_checks(ctx: RunContext) -> TriggerEvent:
    """A ci_failed event with the failed run's checks (name, conclusion, summary, log excerpt).

    Read from the forge with the run's forge token, through the CI goal's own
    provider code, so the first turn starts from what CI said and not only from a
    URL. The run goes on without them when they cannot be read (no remote, no
    token for this repository, the API down): it is told so, and the audit log too.
    """
    event = ctx.plan.event
    if event.kind != "ci_failed" or event.data.get("failed_checks") or not event.start_commit:
        return event
    from outloop_cli.errors import OutloopError

    try:
        checks = _read_failed_checks(ctx, event.start_commit)
    except OutloopError as exc:
        reason = exc.message
        ctx.note(0, f"the failed run's checks were not read: {reason}")
        ctx.audit("trigger_checks_unavailable", reason=reason)
        return event
    ctx.audit("trigger_checks_read", failed=[c["name"] for c in checks])
    return dataclasses.replace(event, data={**event.data, "failed_checks": checks})


def _read_failed_checks(ctx: RunContext, sha: str) -> list[dict[str, str]]:
    from outloop_cli.engine.forge import open_run_forge_session
    from outloop_cli.errors import CouldNotRun
    from outloop_cli.goals.ci.verifier import provider_for

    remote_url = ctx.plan.repo.remote_url("origin")
    if remote_url is None:
        raise CouldNotRun("the repository has no `origin` remote", hint="")
    session = open_run_forge_session(ctx, remote_url, want_pr=False)
    try:
        forge = provider_for(session)
        failing = [c for c in forge.snapshot(sha).checks if c.completed and not c.green]
        details = forge.details(sha, failing[:MAX_FAILED_CHECKS])
        # a CI log may echo the token that reads it: masked with the run's secrets and it
        masker = ctx.plan.access.masker(extra=session.secret_values())
    finally:
        session.close()
    mask = masker.mask
    found = []
    for detail in details:
        text = "\n".join(
            part
            for part in (detail.title, detail.summary, *detail.annotations, detail.log_excerpt)
            if part
        )
        found.append(
            {
                "name": clean_text(detail.check.name)[:200],
                "conclusion": clean_text(detail.check.conclusion or "")[:40],
                "url": clean_text(detail.check.url or "")[:500],
                "summary": mask(clean_text(text))[:MAX_CHECK_TEXT],
            }
        )
    return found
