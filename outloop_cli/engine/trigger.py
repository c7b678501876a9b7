"""Which event starts a run, and whether it may: the skip rule that keeps triggers from storming.

A triggered start (a timer, a workflow's event) that finds the loop still
running in this repository is skipped and recorded, never queued; a schedule's
fire time starts at most one run. A person's ``outloop run`` keeps its own rule
(a second run is refused, or allowed beside the first with ``--parallel``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.errors import TriggerSkipped, UsageError
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
