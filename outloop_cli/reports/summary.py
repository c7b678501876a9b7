"""A run as GitHub-flavoured markdown: ``summary.md`` and ``$GITHUB_STEP_SUMMARY``.

GitHub refuses a step summary over 1 MiB, so every part is bounded and a
summary that would still be too big is rendered again with less detail
(fewer table rows, a shorter output tail, no chart) until it fits. Text
from runs (labels, agent output) is never trusted as markdown: it is
escaped in prose and tables, and output goes into a fence longer than any
run of backticks inside it.
"""

from __future__ import annotations

import html
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from outloop_cli.reports.junit import clean_tail, clean_text
from outloop_cli.store.records import GoalResult, IterationRecord, RunRecord, RunState, StopReason

__all__ = ["MAX_SUMMARY_BYTES", "outcome_words", "render_summaries", "render_summary"]

# GitHub's limit for one step's summary
MAX_SUMMARY_BYTES = 1024 * 1024

_STOP_WORDS: dict[StopReason, str] = {
    StopReason.GOAL_MET: "goal met",
    StopReason.MAX_ITERATIONS: "reached the iteration limit",
    StopReason.MAX_TIME: "ran out of time",
    StopReason.MAX_COST: "reached the cost limit",
    StopReason.MAX_TOKENS: "reached the token limit",
    StopReason.STALLED: "stalled: no progress",
    StopReason.STOPPED: "stopped on request",
    StopReason.AGENT_ERROR: "the agent kept failing",
    StopReason.PROTECTED_PATH: "the agent changed a protected path",
    StopReason.SECRET_IN_DIFF: "a secret was found in the diff",
    StopReason.INTERRUPTED: "interrupted",
    StopReason.APPROVAL_DENIED: "a human denied the approval it waited for",
    StopReason.APPROVAL_TIMEOUT: "nobody approved in time",
    StopReason.ERROR: "could not run",
}

_CELL_CHARS = 120
_FACT_CHARS = 300
# CommonMark lets any ASCII punctuation be backslash-escaped; these are the
# ones that start inline markup, an HTML tag or entity, or end a table cell
_INLINE_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>|~&])")
# at the start of a line these would open a heading, list, quote or rule
_BLOCK_START_RE = re.compile(r"^(\s*)([#>+=-]|\d+[.)])")


@dataclass(frozen=True)
class _Detail:
    """How much a summary shows, one level of the ladder it climbs down to fit its size limit."""

    rows: int
    tail_bytes: int
    chart_points: int
    failing_names: int


# from most to least detail; the last one is a few kilobytes at most
_LEVELS = (
    _Detail(rows=100, tail_bytes=64 * 1024, chart_points=100, failing_names=50),
    _Detail(rows=40, tail_bytes=16 * 1024, chart_points=40, failing_names=20),
    _Detail(rows=12, tail_bytes=4 * 1024, chart_points=0, failing_names=5),
    _Detail(rows=0, tail_bytes=0, chart_points=0, failing_names=0),
)


def render_summary(record: RunRecord) -> str:
    """The run as markdown, under ``MAX_SUMMARY_BYTES`` when UTF-8 encoded."""
    return _render_within(record, MAX_SUMMARY_BYTES - 1)


def render_summaries(records: Sequence[RunRecord]) -> str:
    """Several runs as one document: an overview table, then each run.

    Runs share the size budget equally once the whole would not fit, and
    runs that would not fit even without detail are named and left out.
    """
    if not records:
        return "## outloop\n\nNo runs.\n"
    if len(records) == 1:
        return render_summary(records[0])
    met = sum(1 for record in records if record.goal_met)
    head = [
        f"# outloop: {len(records)} runs, {met} met their goal",
        "",
        "| Loop | Result | Iterations | Cost | Branch |",
        "|---|---|--:|--:|---|",
    ]
    for record in records:
        head.append(
            "| "
            + " | ".join(
                [
                    _escape(record.loop, _CELL_CHARS),
                    f"{_icon(record)} {_escape(outcome_words(record), _CELL_CHARS)}",
                    str(len(record.agent_iterations)),
                    money_text(record.cost_usd),
                    _code(record.branch, _CELL_CHARS, in_table=True),
                ]
            )
            + " |"
        )
    header = "\n".join(head) + "\n"
    budget = MAX_SUMMARY_BYTES - 1 - _size(header)
    full = [_render(record, _LEVELS[0]) for record in records]
    if sum(_size(part) for part in full) + 2 * len(full) <= budget:
        return header + "".join("\n" + part for part in full)
    share = budget // len(records)
    parts: list[str] = []
    used = 0
    for index, record in enumerate(records):
        part = _render_within(record, max(share - 1, 0))
        if used + _size(part) + 1 > budget - 200:
            left = len(records) - index
            parts.append(f"\n*{left} more run{'s' if left != 1 else ''} left out for size.*\n")
            break
        parts.append("\n" + part)
        used += _size(part) + 1
    return header + "".join(parts)


# -- one run -------------------------------------------------------------------------


def _render_within(record: RunRecord, budget: int) -> str:
    text = ""
    for detail in _LEVELS:
        text = _render(record, detail)
        if _size(text) <= budget:
            return text
    return text


def _render(record: RunRecord, detail: _Detail) -> str:
    parts = [_headline(record), _facts(record)]
    if detail.rows:
        parts.append(_iterations(record, detail.rows))
        judged = _judge_section(record, detail.rows)
        if judged:
            parts.append(judged)
    if detail.chart_points:
        chart = _chart(record, detail.chart_points)
        if chart:
            parts.append(chart)
    if detail.tail_bytes:
        tail = _last_output(record, detail)
        if tail:
            parts.append(tail)
    parts.append(_how_to_look(record))
    return "\n".join(parts)


def _headline(record: RunRecord) -> str:
    lines = [
        f"## {_icon(record)} {_escape(record.loop, _CELL_CHARS)}: {_escape(outcome_words(record))}"
    ]
    description = _escape(record.description or "", _FACT_CHARS)
    if description:
        lines += ["", f"*{description}*"]
    if record.stop_detail:
        lines += ["", "> " + _escape(record.stop_detail, _FACT_CHARS)]
    warning = (record.sandbox or {}).get("warning")
    if warning:
        lines += ["", "> [!WARNING]", "> " + _escape(str(warning), 2 * _FACT_CHARS)]
    return "\n".join(lines) + "\n"


def outcome_words(record: RunRecord) -> str:
    """How the run ended, as a short phrase: "goal met after 3 iterations"."""
    turns = len(record.agent_iterations)
    after = f"after {turns} iteration{'s' if turns != 1 else ''}"
    if record.stop_reason is StopReason.GOAL_MET:
        return "goal already met, no agent turn needed" if turns == 0 else f"goal met {after}"
    if record.stop_reason is not None:
        return f"{_STOP_WORDS.get(record.stop_reason, record.stop_reason.value)} {after}"
    if record.state is RunState.RUNNING:
        return f"still running, {after.replace('after', 'at')}"
    return f"{record.state.value} {after}"


def _icon(record: RunRecord) -> str:
    if record.goal_met:
        return "✅"
    if record.stop_reason is None and record.state is RunState.RUNNING:
        return "⏳"
    return "❌"


def _facts(record: RunRecord) -> str:
    stop = record.stop_reason.value if record.stop_reason else record.state.value
    if record.exit_code is not None:
        stop += f" (exit {record.exit_code})"
    rows = [
        ("Loop", _code(record.loop, _FACT_CHARS, in_table=True)),
        ("Result", _code(stop, _FACT_CHARS, in_table=True)),
        ("Branch", _code(record.branch, _FACT_CHARS, in_table=True)),
        ("Base", _code(record.base_commit[:12], _FACT_CHARS, in_table=True)),
        ("Iterations", str(len(record.agent_iterations))),
        ("Duration", duration_text(record.duration)),
        ("Cost", money_text(record.cost_usd)),
        ("Tokens", "—" if record.tokens is None else f"{record.tokens:,}"),
        ("Agent", _escape(record.agent_label, _FACT_CHARS)),
        ("Goal", _code(record.goal_label, _FACT_CHARS, in_table=True)),
        ("Sandbox", _sandbox_words(record)),
    ]
    # the run id as the header row: GitHub draws an empty header as a blank band
    lines = [f"| Run | {_code(record.run_id, _FACT_CHARS, in_table=True)} |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def _sandbox_words(record: RunRecord) -> str:
    sandbox = record.sandbox
    if sandbox is None:
        return "—"
    if sandbox.get("active"):
        return "bubblewrap"
    if sandbox.get("requested") == "none":
        return "none (`sandbox: none`)"
    return "**none: bubblewrap could not run**"


def _iterations(record: RunRecord, max_rows: int) -> str:
    iterations = record.iterations
    lines = [
        "### Iterations",
        "",
        "| # | Commit | Agent | Changed | Goal | Failing | Duration | Tokens | Cost |",
        "|--:|---|---|--:|---|--:|--:|--:|--:|",
    ]
    if not iterations:
        return "\n".join([*lines[:2], "*No iterations recorded.*"]) + "\n"
    if len(iterations) <= max_rows:
        shown: list[IterationRecord | None] = list(iterations)
    else:
        # the start shows where it began, the end where it got to
        head = min(3, max_rows // 4)
        shown = [*iterations[:head], None, *iterations[len(iterations) - (max_rows - head) :]]
    omitted = len(iterations) - sum(1 for it in shown if it is not None)
    for it in shown:
        if it is None:
            lines.append(f"| … | *{omitted} iterations not shown; `outloop show` lists all* |")
        else:
            lines.append("| " + " | ".join(_iteration_cells(it)) + " |")
    return "\n".join(lines) + "\n"


def _iteration_cells(it: IterationRecord) -> list[str]:
    agent = it.agent
    if agent is None:
        agent_cell = "—"
    elif agent.error is None:
        agent_cell = f"exit {agent.exit_code}" if agent.exit_code is not None else "ok"
    else:
        exit_part = f" (exit {agent.exit_code})" if agent.exit_code is not None else ""
        agent_cell = "⚠️ " + _escape(agent.error + exit_part, _CELL_CHARS)
    changed = "—" if it.n == 0 else str(len(it.changed_files))
    if it.skipped_files:
        changed += f" (+{len(it.skipped_files)} not committed)"
    failing = _failing(it.goal)
    cost = money_text(agent.cost_usd if agent else None)
    tokens = "—"
    if agent is not None and (agent.input_tokens, agent.output_tokens) != (None, None):
        tokens = f"{(agent.input_tokens or 0) + (agent.output_tokens or 0):,}"
    judged = it.goal.judge if it.goal is not None else None
    if judged is not None:
        # the judge's own spending, shown apart from the agent's
        if judged.tokens is not None:
            tokens += f" + {judged.tokens:,} judge"
        if judged.cost_usd is not None:
            cost += f" + {money_text(judged.cost_usd)} judge"
    return [
        "0 (baseline)" if it.n == 0 else str(it.n),
        _code(it.commit[:7], _CELL_CHARS, in_table=True) if it.commit else "—",
        agent_cell,
        changed,
        _goal_cell(it.goal),
        "—" if failing is None else str(failing),
        duration_text(it.duration),
        tokens,
        cost,
    ]


def _judge_section(record: RunRecord, max_rows: int) -> str:
    """The judge's last verdict, criterion by criterion (with the votes when they disagree)."""
    last = next((it for it in reversed(record.iterations) if it.goal and it.goal.judge), None)
    if last is None or last.goal is None or last.goal.judge is None:
        return ""
    judged = last.goal.judge
    lines = [
        f"### Judge ({_escape(judged.preset)}), iteration {last.n}",
        "",
        "| Criterion | Verdict | Votes | Reason |",
        "|---|---|---|---|",
    ]
    for c in judged.criteria[:max_rows]:
        verdict = "✅ met" if c.met else "❌ not met"
        reason = c.reason if not c.dissent else c.reason + " — " + "; ".join(c.dissent)
        lines.append(
            f"| {_escape(c.criterion, _CELL_CHARS)} | {verdict} | {c.passed_votes}/{c.votes} "
            f"| {_escape(reason, _FACT_CHARS)} |"
        )
    return "\n".join(lines) + "\n"


def _goal_cell(goal: GoalResult | None) -> str:
    if goal is None:
        return "—"
    if goal.met:
        return "✅ pass"
    return "⏱️ timeout" if goal.timed_out else "❌ fail"


def _failing(goal: GoalResult | None) -> int | None:
    return goal.failing_count if goal is not None else None


@dataclass(frozen=True)
class FailingSeries:
    """Failing tests per iteration, as both the markdown and the HTML chart draw them."""

    title: str
    points: list[tuple[int, int]]
    top: int


def failing_series(record: RunRecord, max_points: int) -> FailingSeries | None:
    """The points to chart (the last ``max_points``), or None when there is no trend to show."""
    points = [
        (it.n, it.goal.tests.failing)
        for it in record.iterations
        if it.goal is not None and it.goal.tests is not None
    ]
    # one point is not a trend
    if len(points) < 2:
        return None
    title = "Failing tests per iteration"
    if len(points) > max_points:
        points = points[-max_points:]
        title += f" (last {max_points})"
    return FailingSeries(title, points, max(1, *(failing for _, failing in points)))


def _chart(record: RunRecord, max_points: int) -> str:
    series = failing_series(record, max_points)
    if series is None:
        return ""
    title, points, top = series.title, series.points, series.top
    labels = ", ".join(f'"{n}"' for n, _ in points)
    values = ", ".join(str(failing) for _, failing in points)
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            f'    title "{title}"',
            f'    x-axis "iteration" [{labels}]',
            f'    y-axis "failing tests" 0 --> {top}',
            f"    bar [{values}]",
            "```",
            "",
        ]
    )


def _last_output(record: RunRecord, detail: _Detail) -> str:
    final = next((it for it in reversed(record.iterations) if it.goal is not None), None)
    if final is None or final.goal is None:
        return ""
    goal = final.goal
    output = clean_tail(goal.output_tail, detail.tail_bytes).strip("\n")
    if not output and not goal.failing:
        return ""
    label = f"Last goal output (iteration {final.n}: {goal.summary or _goal_cell(goal)})"
    lines = ["<details>", f"<summary>{html.escape(clean_text(label)[:_FACT_CHARS])}</summary>", ""]
    if goal.failing and detail.failing_names:
        names = goal.failing[: detail.failing_names]
        lines += [f"- {_code(name, _FACT_CHARS)}" for name in names]
        if len(goal.failing) > len(names):
            lines.append(f"- … and {len(goal.failing) - len(names)} more")
        lines.append("")
    if output:
        fence = _fence(output)
        lines += [f"{fence}text", output, fence, ""]
    lines += ["</details>", ""]
    return "\n".join(lines)


def _how_to_look(record: RunRecord) -> str:
    branch = shlex.quote(clean_text(record.branch))
    base = shlex.quote(clean_text(record.base_commit))
    commands = f"git log --oneline {base}..{branch}\ngit diff {base}..{branch}"
    fence = _fence(commands)
    return "\n".join(["### Look at the work", "", f"{fence}sh", commands, fence, ""])


# -- markdown pieces --------------------------------------------------------------------


def _escape(text: str, limit: int = _FACT_CHARS) -> str:
    """Plain text that renders as itself on one line, in prose or a table cell."""
    text = " ".join(clean_text(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _INLINE_SPECIAL_RE.sub(r"\\\1", text)
    return _BLOCK_START_RE.sub(lambda m: m.group(1) + _escape_block_marker(m.group(2)), text)


def _escape_block_marker(marker: str) -> str:
    # "1." becomes "1\." — the escape goes before the punctuation
    return marker[:-1] + "\\" + marker[-1]


def _code(text: str, limit: int, *, in_table: bool = False) -> str:
    """An inline code span that no backtick inside can close early."""
    text = " ".join(clean_text(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text:
        return "—"
    ticks = "`" * (_longest_backtick_run(text) + 1)
    # a span that starts or ends with a backtick needs padding to be read
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{ticks}{pad}{text}{pad}{ticks}"
    # GFM splits cells at "|" even inside code spans unless it is escaped
    return span.replace("|", "\\|") if in_table else span


def _fence(text: str) -> str:
    return "`" * max(3, _longest_backtick_run(text) + 1)


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def duration_text(seconds: float) -> str:
    """A duration as the reports show it: 4.2s, 3m 05s, 1h 02m."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def money_text(value: float | None) -> str:
    """US dollars as the reports show them; sub-cent amounts keep four decimals."""
    if value is None or not math.isfinite(value):
        return "—"
    if 0 < value < 0.01:
        return f"${value:.4f}"
    return f"${value:.2f}"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))
