"""The loop file's ``on:`` key: what starts a loop by itself, declared once.

``on:`` is a plain key to YAML 1.2 tools and to outloop: the loop file is
*composed*, never loaded, so PyYAML's YAML 1.1 reading of a bare ``on`` as the
boolean true never turns the key into ``True``; its node keeps its text and its
line (:func:`~outloop_cli.config.spec_collections.Obj.check` reads key text).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from yaml.nodes import Node

from outloop_cli.config import model as m
from outloop_cli.config import values as v
from outloop_cli.config.spec import INVALID, Context, JSONSchema, KeyPath, Spec, shorten
from outloop_cli.config.spec_collections import Field, ListOf, Obj, Rule, Seen
from outloop_cli.config.spec_rules import OnlyWith
from outloop_cli.config.spec_scalars import Bool, Str

EVENTS = ("schedule", "ci_failed", "issues", "pull_request")
# what people call these events elsewhere, and what they are called here
_ALIASES = {
    "cron": "schedule",
    "workflow_dispatch": "manual",
    "workflow_run": "ci_failed",
    "ci_failure": "ci_failed",
    "ci": "ci_failed",
    "issue": "issues",
    "pr": "pull_request",
    "pull_requests": "pull_request",
    "pull_request_target": "pull_request",
}


@dataclass(frozen=True)
class CronSpec(Spec):
    """A cron expression (five fields or a macro such as ``@daily``), with its spaces normalised."""

    what = "a cron expression"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        # the cron parser is imported for a loop that has a schedule, not for every loop file
        from outloop_cli.triggers.cron import CronError, parse_cron

        text = Str(self.what, non_blank=True).check(node, path, ctx)
        if text is INVALID:
            return INVALID
        try:
            parse_cron(text)
        except CronError as exc:
            ctx.report(node, path, f"invalid cron {shorten(text)!r}: {exc.message}", exc.hint)
            return INVALID
        return " ".join(text.split())

    def schema(self) -> JSONSchema:
        from outloop_cli.triggers.cron import SCHEMA_PATTERN

        return {"type": "string", "pattern": v.anchored(SCHEMA_PATTERN)}


@functools.cache
def _zones() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


def check_timezone(text: str) -> str:
    if text in ("UTC", "Etc/UTC") or text in _zones():
        return text
    close = v.suggest(text, sorted(_zones()))
    hint = f"did you mean `{close}`?" if close else "an IANA zone name such as Europe/Berlin or UTC"
    raise v.BadValue(f"unknown time zone {shorten(text)!r}", hint)


_LABELS = ListOf(
    Str("a label", non_blank=True),
    min_items=1,
    unique=True,
    empty_hint="name at least one label; the loop starts when an item gets one of them",
)


def _labels(what: str) -> Obj:
    return Obj(
        m.LabelTrigger,
        (
            Field(
                "labels",
                _LABELS,
                f"The loop starts when {what} gets one of these labels.",
                required=True,
                example="[outloop]",
            ),
        ),
    )


CI_FAILED = Obj(
    m.CIFailedTrigger,
    (
        Field(
            "branches",
            ListOf(Str("a branch name", non_blank=True), min_items=1, unique=True),
            "A workflow run on one of these branches concluded `failure`.",
            required=True,
            example="[main]",
        ),
        Field(
            "workflows",
            ListOf(Str("a workflow name", non_blank=True), min_items=1, unique=True),
            "The workflows (their `name:`) to watch. Default: every workflow in "
            ".github/workflows except outloop's own.",
            example="[CI]",
        ),
    ),
)


@dataclass(frozen=True)
class NeedsATrigger(Rule):
    """``manual: false`` with no other trigger is a loop nothing can start."""

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        if seen.values.get("manual", True) is not False:
            return
        if any(event in seen.keys for event in EVENTS):
            return
        ctx.report(
            seen.keys["manual"],
            path,
            "`manual: false` with no other trigger: nothing could ever start this loop",
            "add a trigger (schedule, ci_failed, issues, pull_request) or remove `manual: false`",
        )

    def schema(self, obj: Obj) -> JSONSchema:
        return {
            "if": {"required": ["manual"], "properties": {"manual": {"const": False}}},
            "then": {"anyOf": [{"required": [e]} for e in EVENTS]},
        }


class _Triggers(Obj):
    def _unknown(self, key: str, ctx: Context) -> str:
        if key in _ALIASES:
            return f"outloop calls it `{_ALIASES[key]}`"
        return super()._unknown(key, ctx)


TRIGGERS = _Triggers(
    m.TriggersConfig,
    (
        Field(
            "schedule",
            ListOf(CronSpec(), min_items=1, unique=True),
            "Cron expressions (5 fields or @daily…), in UTC unless `timezone` is given; "
            "each fire time starts at most one run.",
            example='["0 2 * * *"]',
        ),
        Field(
            "timezone",
            Str("an IANA time zone", check_text=check_timezone),
            "The IANA time zone of `schedule` (e.g. Europe/Berlin), for GitHub Actions, "
            "systemd timers and cron alike. Default: UTC.",
            example="Europe/Berlin",
        ),
        Field(
            "ci_failed",
            CI_FAILED,
            "A workflow run concluded `failure`: the loop starts from the failing commit "
            "with the failed checks in its first feedback.",
            example="{branches: [main]}",
        ),
        Field(
            "issues",
            _labels("an issue"),
            "An issue got a label: its title and body reach the agent, marked as untrusted.",
            example="{labels: [outloop]}",
        ),
        Field(
            "pull_request",
            _labels("a pull request"),
            "A pull request got a label: the loop starts from its head commit.",
            example="{labels: [outloop-fix]}",
        ),
        Field(
            "manual",
            Bool(),
            "Whether a person may start the loop (`outloop run`, workflow_dispatch).",
        ),
    ),
    (
        OnlyWith(
            ("timezone",),
            "schedule",
            hint="a time zone applies to `schedule`; add one, or remove `timezone`",
        ),
        NeedsATrigger(),
    ),
    unknown_hint="the events are schedule, ci_failed, issues, pull_request and manual",
)
