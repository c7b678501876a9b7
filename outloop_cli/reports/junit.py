"""JUnit XML for outloop runs: one ``<testsuite>`` per run, the goal as its test case.

The goal check is the test; its verdict is the run's *final* one. When the
loop converged the goal case is a plain pass whose only child is
``<system-out>``: each earlier failed attempt (summary, failing tests, log)
first, then the passing run's output, and the suite's ``iteration.N.*``
properties say the same per iteration. It once carried Surefire's
``<flakyFailure>`` children instead, and viewers disagreed about it:
xunit-viewer takes the first child it does not rank (``flakyFailure``) as
the status and showed the goal as unknown, while junit2html and junitparser
showed it passed; Surefire's schema puts ``flakyFailure`` before
``system-out``, so no order satisfies both. A pass with text reads as passed
everywhere (``tests/reports/test_viewers.py`` renders it with each). When
the loop did not converge, the earlier attempts are ``<rerunFailure>``
children after the ``<failure>``, which every viewer ranks below it. When
the goal wrote its own JUnit file, the final evaluation's cases follow the
goal test case, so CI lists the project's real tests too.

Which schema: JUnit XML has no single standard, and the three schemas that
readers point at contradict each other (copies and sources in
``tests/xsd/``). Jenkins xUnit's ``junit-10.xsd`` is the union dialect: it
takes Ant's suite attributes (``timestamp``, ``hostname``, ``id``,
``package``) and Surefire's rerun elements, so the whole file validates
against it. Ant's 2011 ``JUnit.xsd`` has no rerun elements and no
attributes on ``<testsuites>`` at all, and Surefire's XSD describes a
single suite without Ant's attributes; no document can satisfy all three
and still carry reruns. Every other encoding of a rerun that Ant accepts (a
``<testcase>`` per attempt, counted as failed or as skipped) would make a
converged loop red or lie about skips, so we keep Surefire's encoding, and
the tests check that the file minus what Ant has no words for is valid Ant,
and that each suite minus Ant's attributes is valid Surefire. Readers that
do not know the rerun elements ignore them and still see the right verdict.
``<testsuites>`` carries no ``skipped`` total: ``junit-10.xsd`` does not
declare it (each ``<testsuite>`` does carry ``skipped``).

Why not the ``junit-xml`` package: its 1.9 release writes a ``disabled``
attribute on both ``<testsuites>`` and ``<testsuite>`` (``build_xml_doc``
and ``to_xml_report_string``) that neither the current ``junit-10.xsd``, Ant
nor Surefire declares, and it cleans text with a regex over the already
serialised document, so of an ANSI colour code only the ESC byte goes and
``[31m`` stays in the text, while a lone surrogate (an undecodable byte read
with ``surrogateescape``) has by then become ``&#56575;``, a character
reference XML forbids, and the file no longer parses.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from outloop_cli.safe_text import clean_text
from outloop_cli.store.atomic import atomic_write_bytes
from outloop_cli.store.records import (
    GoalResult,
    IterationRecord,
    RunRecord,
    RunState,
    StopReason,
    TestCase,
)

__all__ = [
    "MAX_TEXT_BYTES",
    "clean_tail",
    "clean_text",
    "render_junit",
    "tail_bytes",
    "write_junit",
]

# Per element: enough for a useful failure tail, small enough that CI
# servers (GitLab caps JUnit artifacts) still parse a long run's report.
MAX_TEXT_BYTES = 64 * 1024
# Earlier attempts are history; their full logs stay in the run directory.
MAX_RERUN_TEXT_BYTES = 16 * 1024
RERUN_OUTPUTS_KEPT = 10
# a converged goal's system-out: this much per earlier attempt, half the element for the output
MAX_ATTEMPT_TEXT_BYTES = 3 * 1024
MAX_MESSAGE_CHARS = 1024
MAX_ATTRIBUTE_CHARS = 4096

_GOAL_ERROR_STOPS = frozenset({StopReason.ERROR, StopReason.AGENT_ERROR})


def tail_bytes(text: str, limit: int) -> str:
    """The end of ``text`` in at most ``limit`` UTF-8 bytes, marked where cut.

    Output tails keep their end because that is where failures are
    reported; the cut moves to the next line start when one is near.
    """
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    # the marker is under 64 bytes, so marker + kept part fits the limit
    keep = max(limit - 64, 0)
    kept = data[len(data) - keep :].decode("utf-8", "ignore")
    newline = kept.find("\n", 0, 512)
    if newline != -1:
        kept = kept[newline + 1 :]
    cut = len(data) - len(kept.encode("utf-8"))
    return f"[… {cut} bytes cut …]\n{kept}"


def clean_tail(text: str, limit: int) -> str:
    """``tail_bytes(clean_text(text), limit)``, without cleaning what would be cut anyway.

    Output tails can be megabytes; only the last ``limit`` bytes are kept,
    so only a window a few times that size (escape sequences shrink when
    cleaned) is cleaned. The cut is still marked.
    """
    window = 4 * limit + 4096
    if len(text) <= window:
        return tail_bytes(clean_text(text), limit)
    text = text[-window:]
    # the window may start inside an escape sequence; none spans a line end
    # or another ESC, so start at the first of those
    starts = [i for i in (text.find("\n", 0, 1024), text.find("\x1b", 0, 1024)) if i != -1]
    if starts:
        text = text[min(starts) :]
    kept = tail_bytes(clean_text(text), limit)
    if kept.startswith("[… "):
        return kept
    # the window held little after cleaning; say that earlier output is gone
    return tail_bytes("[… earlier output cut …]\n" + kept, limit)


def render_junit(records: Sequence[RunRecord]) -> bytes:
    """The runs as one UTF-8 JUnit XML document, declaration included."""
    root = ET.Element("testsuites")
    suites = [_suite(record, index) for index, record in enumerate(records)]
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    _set(root, name="outloop", **{k: str(v) for k, v in totals.items()})
    root.set("time", _seconds(sum(_finite(record.duration) for record in records)))
    root.extend(suites)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def write_junit(path: Path, records: Sequence[RunRecord]) -> None:
    """Write ``render_junit(records)`` to ``path`` atomically.

    A reader (CI uploading artifacts, ``outloop status``) sees the old file
    or the new one, never half of one, even if we crash mid-write.
    """
    # a report is read by CI tooling and other users like any build artifact
    atomic_write_bytes(Path(path), render_junit(records), mode=0o644)


# -- one run --------------------------------------------------------------------


def _suite(record: RunRecord, index: int) -> ET.Element:
    suite_name = f"outloop.{record.loop}"
    suite = ET.Element("testsuite")
    cases = [_goal_case(record, suite_name)]
    final = record.last_goal
    if final is not None:
        cases.extend(_carried_case(case, suite_name) for case in final.cases)
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for case in cases:
        for tag, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            if case.find(tag) is not None:
                counts[key] += 1
    _set(
        suite,
        name=suite_name,
        tests=str(len(cases)),
        failures=str(counts["failures"]),
        errors=str(counts["errors"]),
        skipped=str(counts["skipped"]),
        time=_seconds(record.duration),
        timestamp=_timestamp(record.started_at),
        hostname=(record.host or "").strip() or "localhost",
        # Ant wants the position here; the run id is in the properties
        id=str(index),
        package="outloop",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(record):
        _set(ET.SubElement(properties, "property"), name=name, value=value)
    suite.extend(cases)
    # Ant requires both; run-level narrative lives here, not per test case
    _sub(suite, "system-out", text=_run_narrative(record))
    _sub(suite, "system-err")
    return suite


def _goal_case(record: RunRecord, suite_name: str) -> ET.Element:
    evaluated = [it for it in record.iterations if it.goal is not None]
    final = evaluated[-1] if evaluated else None
    final_goal = final.goal if final is not None else None
    case = ET.Element("testcase")
    _set(
        case,
        classname=suite_name,
        name=f"goal: {record.goal_label}",
        time=_seconds(final_goal.duration if final_goal else 0.0),
    )

    if record.goal_met:
        # a plain pass: its only child is system-out, earlier attempts first
        text = _attempts_text(evaluated, final_goal)
        if text:
            _sub(case, "system-out", text=text)
        return case

    if final is None and (
        record.stop_reason in _GOAL_ERROR_STOPS
        or (record.stop_reason is None and record.state is RunState.CRASHED)
    ):
        _sub(
            case,
            "error",
            text=_error_text(record),
            message=_message(record.stop_detail or _stop_words(record)),
            type=_stop_words(record),
        )
        return case

    if record.stop_reason is None and record.state is RunState.RUNNING:
        # No verdict yet: skipped is the one outcome that claims none.
        # Surefire puts reruns before <skipped>.
        _add_reruns(case, "rerunFailure", evaluated)
        _sub(case, "skipped", message="run still in progress")
        return case

    verdict_from = final if final_goal is not None and not final_goal.met else None
    summary = final_goal.summary if final_goal is not None else ""
    message = record.stop_detail or summary or _stop_words(record)
    _sub(
        case,
        "failure",
        text=_failure_text(record, verdict_from),
        message=_message(message),
        type=_stop_words(record),
    )
    _add_reruns(case, "rerunFailure", [it for it in evaluated if it is not verdict_from])
    return case


def _attempts_text(evaluated: Sequence[IterationRecord], final_goal: GoalResult | None) -> str:
    """A converged goal's output: what each failed attempt said, then the passing run's output."""
    failed = [it for it in evaluated if it.goal is not None and not it.goal.met]
    lines: list[str] = []
    if failed:
        last = evaluated[-1].n
        lines.append(
            f"goal met at iteration {last} after {len(failed)} failed "
            f"attempt{'s' if len(failed) != 1 else ''}:"
        )
        # the newest attempts matter most; the full logs stay in the run directory
        for it in failed[-RERUN_OUTPUTS_KEPT:]:
            lines += ["", clean_tail(_attempt_text(it), MAX_ATTEMPT_TEXT_BYTES)]
        if len(failed) > RERUN_OUTPUTS_KEPT:
            lines.insert(1, f"(the first {len(failed) - RERUN_OUTPUTS_KEPT} not shown)")
    if final_goal is not None and final_goal.output_tail:
        if lines:
            lines += ["", f"iteration {evaluated[-1].n} (goal met) output:"]
        lines.append(clean_tail(final_goal.output_tail, MAX_TEXT_BYTES // 2))
    return "\n".join(lines)


def _add_reruns(case: ET.Element, tag: str, evaluated: Sequence[IterationRecord]) -> None:
    failed = [it for it in evaluated if it.goal is not None and not it.goal.met]
    with_output = {id(it) for it in failed[-RERUN_OUTPUTS_KEPT:]}
    for it in failed:
        goal = it.goal
        assert goal is not None  # filtered above; narrows the type
        rerun = _sub(
            case,
            tag,
            message=_message(f"iteration {it.n}: {goal.summary or _goal_word(goal)}"),
            type="goal_timeout" if goal.timed_out else "goal_not_met",
        )
        # Surefire requires <stackTrace>; the closest thing a goal has is
        # what failed and where the full log is
        _sub(rerun, "stackTrace", text=_attempt_text(it), limit=MAX_RERUN_TEXT_BYTES)
        if id(it) in with_output and goal.output_tail:
            _sub(rerun, "system-out", text=goal.output_tail, limit=MAX_RERUN_TEXT_BYTES)


def _carried_case(source: TestCase, suite_name: str) -> ET.Element:
    case = ET.Element("testcase")
    _set(
        case,
        classname=source.classname or suite_name,
        name=source.name or "(unnamed)",
        time=_seconds(source.time),
    )
    details = source.details
    message = _message(source.message) if source.message else None
    outcome = source.outcome
    if outcome in {"failed", "failure"}:
        # the goal's own JUnit type attribute is not kept in TestCase
        _sub(case, "failure", text=details, message=message, type="failure")
    elif outcome == "error":
        _sub(case, "error", text=details, message=message, type="error")
    elif outcome == "skipped":
        _sub(case, "skipped", text=details, message=message)
    elif outcome != "passed":
        # an outcome we do not know must not pass silently
        _sub(case, "error", text=details, message=f"unknown outcome {outcome!r}", type="error")
    return case


# -- text of the elements -----------------------------------------------------------


def _failure_text(record: RunRecord, verdict_from: IterationRecord | None) -> str:
    lines = [f"stopped: {_stop_words(record)}"]
    if record.stop_detail:
        lines.append(record.stop_detail)
    if verdict_from is not None and verdict_from.goal is not None:
        lines.append(_attempt_text(verdict_from))
        if verdict_from.goal.output_tail:
            lines += ["", verdict_from.goal.output_tail]
    return "\n".join(lines)


def _error_text(record: RunRecord) -> str:
    lines = [f"stopped: {_stop_words(record)}"]
    if record.stop_detail:
        lines.append(record.stop_detail)
    for it in reversed(record.iterations):
        agent = it.agent
        if agent is not None and agent.error is not None:
            exit_part = f" (exit {agent.exit_code})" if agent.exit_code is not None else ""
            lines.append(f"iteration {it.n}: agent {agent.error}{exit_part}")
            if agent.final_message:
                lines += ["", agent.final_message]
            break
    return "\n".join(lines)


def _attempt_text(it: IterationRecord) -> str:
    goal = it.goal
    if goal is None:
        return f"iteration {it.n}: goal not evaluated"
    lines = [f"iteration {it.n}: {goal.summary or _goal_word(goal)}"]
    if goal.failing:
        lines.append("failing: " + ", ".join(goal.failing))
    if goal.log:
        lines.append(f"log: {goal.log}")
    return "\n".join(lines)


def _run_narrative(record: RunRecord) -> str:
    agent_turns = len(record.agent_iterations)
    lines = [
        f"outloop run {record.run_id} ({record.loop}): {_stop_words(record)}"
        f" after {agent_turns} agent iteration{'s' if agent_turns != 1 else ''}",
    ]
    if record.stop_detail:
        lines.append(record.stop_detail)
    lines.append(f"branch {record.branch} from {record.base_commit}")
    return "\n".join(lines)


def _stop_words(record: RunRecord) -> str:
    if record.stop_reason is not None:
        return record.stop_reason.value
    return record.state.value


def _goal_word(goal: GoalResult) -> str:
    if goal.met:
        return "goal met"
    return "goal timed out" if goal.timed_out else "goal not met"


# -- properties ---------------------------------------------------------------------------


def _properties(record: RunRecord) -> Iterator[tuple[str, str]]:
    facts: list[tuple[str, object]] = [
        ("run_id", record.run_id),
        ("loop", record.loop),
        ("description", record.description),
        ("state", record.state.value),
        ("branch", record.branch),
        ("base_commit", record.base_commit),
        ("stop_reason", record.stop_reason.value if record.stop_reason else None),
        ("stop_detail", record.stop_detail),
        ("iterations", len(record.agent_iterations)),
        ("agent", record.agent_label),
        ("goal", record.goal_label),
        ("cost_usd", _cost(record.cost_usd)),
        ("tokens", record.tokens),
        ("worktree", record.worktree),
        ("exit_code", record.exit_code),
        ("started_at", record.started_at),
        ("finished_at", record.finished_at),
        ("duration", _seconds(record.duration)),
        ("outloop_version", record.outloop_version),
    ]
    for it in record.iterations:
        prefix = f"iteration.{it.n}"
        goal, agent = it.goal, it.agent
        tokens = None
        if agent is not None and (agent.input_tokens, agent.output_tokens) != (None, None):
            tokens = (agent.input_tokens or 0) + (agent.output_tokens or 0)
        facts += [
            (f"{prefix}.commit", it.commit),
            (f"{prefix}.goal", None if goal is None else ("pass" if goal.met else "fail")),
            (f"{prefix}.failing", _failing(goal)),
            (f"{prefix}.duration", _seconds(it.duration)),
            (f"{prefix}.cost_usd", _cost(agent.cost_usd if agent else None)),
            (f"{prefix}.tokens", tokens),
            (f"{prefix}.agent_error", agent.error if agent else None),
        ]
    for name, value in facts:
        if value is None or value == "":
            continue
        yield name, str(value)


def _failing(goal: GoalResult | None) -> int | None:
    return goal.failing_count if goal is not None else None


# -- formatting --------------------------------------------------------------------------


def _finite(value: float | None) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        return 0.0
    return value


def _seconds(value: float | None) -> str:
    # Surefire allows at most three decimals and no exponent
    return f"{_finite(value):.3f}"


def _cost(value: float | None) -> str | None:
    return None if value is None else f"{_finite(value):.4f}"


def _timestamp(iso: str) -> str:
    """ISO 8601 in UTC without an offset: Ant's schema forbids one."""
    text = iso.strip()
    if text.endswith(("Z", "z")):
        # fromisoformat learned "Z" only in 3.11
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "1970-01-01T00:00:00"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat()


# -- the only places text enters the tree ------------------------------------------


def _message(text: str) -> str:
    # a message is a headline; the element's text has the rest
    text = clean_text(text).strip()
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "…"


def _set(element: ET.Element, **attributes: str | None) -> None:
    for name, value in attributes.items():
        if value is not None:
            element.set(name, clean_text(value)[:MAX_ATTRIBUTE_CHARS])


def _sub(
    parent: ET.Element,
    tag: str,
    *,
    text: str | None = None,
    limit: int = MAX_TEXT_BYTES,
    **attributes: str | None,
) -> ET.Element:
    child = ET.SubElement(parent, tag)
    _set(child, **attributes)
    if text:
        # clean first, so undecodable bytes become U+FFFD and not "?"
        child.text = clean_tail(text, limit) or None
    return child
