"""Which event starts a run, and whether it may: the skip rule that keeps triggers from storming.

A triggered start (a timer, a workflow's event) that finds the loop still
running in this repository is skipped and recorded, never queued; a schedule's
fire time starts at most one run. A person's ``outloop run`` keeps its own rule
(a second run is refused, or allowed beside the first with ``--parallel``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.errors import TriggerSkipped, UsageError
from outloop_cli.safe_text import clean_text
from outloop_cli.store.locks import loop_running
from outloop_cli.store.triggers import claim, record_skip
from outloop_cli.triggers.event import (
    NotForThisLoop,
    TriggerEvent,
    from_github,
    manual_event,
    read_payload,
    schedule_event,
)

if TYPE_CHECKING:
    from outloop_cli.config.model import LoopConfig
    from outloop_cli.engine.context import RunContext
    from outloop_cli.git.repo import Repository

TRIGGERS = ("schedule",)


def resolve_event(
    repo: Repository,
    config: LoopConfig,
    *,
    event: Path | None,
    event_name: str | None,
    trigger: str | None,
) -> TriggerEvent:
    """The event of this start (a person's when none is given); skips what is not for the loop."""
    if event is not None and trigger is not None:
        raise UsageError("--event and --trigger exclude each other", hint="pick one")
    try:
        if event is not None:
            payload = read_payload(event)
            name = event_name or os.environ.get("GITHUB_EVENT_NAME") or None
            return from_github(payload, config, event_name=name)
        if trigger == "schedule":
            return schedule_event(config, "local")
        if trigger is not None:
            raise UsageError(
                f"--trigger {trigger!r} is not one outloop knows",
                hint="--trigger schedule (what `outloop schedule install` runs)",
            )
    except NotForThisLoop as exc:
        source = "github" if event is not None else "local"
        record_skip(
            repo.info.common_dir, config.name, source, "event not for this loop", exc.reason
        )
        raise TriggerSkipped(
            f"loop `{config.name}`: skipped, the event is not for it: {exc.reason}",
            hint="see the loop's `on:`",
        ) from None
    return manual_event()


def admit(repo: Repository, config: LoopConfig, event: TriggerEvent, *, parallel: bool) -> None:
    """Skip (recorded, exit 75) a triggered start whose loop is running or whose fire time ran."""
    if event.source == "cli":
        return
    common = repo.info.common_dir
    if not parallel:
        owner = loop_running(common, config.name)
        if owner is not None:
            which = f"run {owner.run_id}" if owner.run_id else owner.describe()
            reason = f"the previous run ({which}) is still going"
            record_skip(common, config.name, event.kind, event.summary, reason)
            raise TriggerSkipped(
                f"loop `{config.name}`: {event.kind} trigger skipped: {reason}",
                hint="a trigger never queues behind a running loop; the next one starts it",
            )
    if not claim(common, config.name, event.kind, event.summary, event.dedupe_key):
        raise TriggerSkipped(
            f"loop `{config.name}`: skipped, {event.dedupe_key} already started a run",
            hint="a schedule starts at most one run per fire time",
        )


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
    from outloop_cli.errors import CouldNotRun
    from outloop_cli.forges.session import open_forge_session
    from outloop_cli.goals.ci.verifier import provider_for

    config = ctx.config
    repo = ctx.plan.repo
    remote_url = repo.remote_url("origin")
    if remote_url is None:
        raise CouldNotRun("the repository has no `origin` remote", hint="")
    ci = config.goal.ci
    provider = ci.provider if ci is not None else "github"
    secret = ctx.plan.access.forge_token(
        provider,
        repo.info.root,
        remote_url,
        ctx.options.policy,
        on_decision=lambda decision: ctx.audit(decision.event, **decision.audit_fields()),
    )
    session = open_forge_session(
        provider=provider,
        secret=secret,
        remote_url=remote_url,
        repo=ci.repo if ci is not None else None,
        api_url=ci.api_url if ci is not None else None,
        cancel=ctx.cancel,
    )
    try:
        forge = provider_for(session)
        failing = [c for c in forge.snapshot(sha).checks if c.completed and not c.green]
        details = forge.details(sha, failing[:MAX_FAILED_CHECKS])
    finally:
        session.close()
    mask = ctx.masker.mask if ctx.masker is not None else (lambda text: text)
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
