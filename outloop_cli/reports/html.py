"""A run as one self-contained HTML page: facts, iterations, the last goal output.

The page loads nothing (inline CSS, no scripts, no images) and says so in a
Content-Security-Policy, so it can be opened from a CI artifact or mailed
around. Every piece of text from a run — labels, branch names, agent and
goal output — is untrusted and goes through ``html.escape`` after
``clean_text``; nothing from a run is ever placed in a tag or attribute
name. Sizes are bounded like the markdown summary's.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from outloop_cli.reports.junit import clean_tail, clean_text
from outloop_cli.reports.summary import (
    duration_text,
    failing_series,
    money_text,
    outcome_words,
)
from outloop_cli.store.records import GoalResult, IterationRecord, RunRecord, RunState

__all__ = ["render_html"]

MAX_OUTPUT_BYTES = 256 * 1024
MAX_ROWS = 500
MAX_FAILING_NAMES = 200
MAX_CHART_POINTS = 100
_CELL_CHARS = 200

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; }
.verdict { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; color: #fff; }
.met { background: #1a7f37; } .not-met { background: #cf222e; } .running { background: #9a6700; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pass td.goal { color: #1a7f37; } tr.fail td.goal { color: #cf222e; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: #f6f8fa; padding: .75rem; overflow-x: auto; white-space: pre-wrap;
      word-break: break-all; }
.muted { color: #59636e; }
"""


def render_html(record: RunRecord) -> str:
    """The run as a complete HTML5 document."""
    title = f"outloop {record.loop}: {outcome_words(record)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # the page needs nothing from anywhere; a crafted run cannot make it fetch
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_text(title, 300)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        _header(record),
        _facts(record),
        _iterations(record),
        _chart(record),
        _last_output(record),
        _look_at_the_work(record),
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(part for part in parts if part)


def _header(record: RunRecord) -> str:
    lines = [
        f"<h1>{_text(record.loop, _CELL_CHARS)} "
        f'<span class="verdict {_verdict_class(record)}">{_text(outcome_words(record))}</span></h1>'
    ]
    if record.description:
        lines.append(f"<p><em>{_text(record.description, 1000)}</em></p>")
    if record.stop_detail:
        lines.append(f"<p>{_text(record.stop_detail, 2000)}</p>")
    return "\n".join(lines)


def _facts(record: RunRecord) -> str:
    stop = record.stop_reason.value if record.stop_reason else record.state.value
    if record.exit_code is not None:
        stop += f" (exit {record.exit_code})"
    rows = [
        ("Run", _code(record.run_id)),
        ("Loop", _code(record.loop)),
        ("Result", _code(stop)),
        ("Branch", _code(record.branch)),
        ("Base commit", _code(record.base_commit)),
        ("Iterations", str(len(record.agent_iterations))),
        ("Started", _text(record.started_at)),
        ("Duration", duration_text(record.duration)),
        ("Cost", money_text(record.cost_usd)),
        ("Tokens", "—" if record.tokens is None else f"{record.tokens:,}"),
        ("Agent", _text(record.agent_label, _CELL_CHARS)),
        ("Goal", _code(record.goal_label)),
        ("Worktree", _code(record.worktree)),
    ]
    body = "\n".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<h2>Run</h2>\n<table class="facts">\n{body}\n</table>'


def _iterations(record: RunRecord) -> str:
    header = (
        "<tr><th>#</th><th>Commit</th><th>Agent</th><th>Changed</th><th>Goal</th>"
        "<th>Failing</th><th>Duration</th><th>Cost</th><th>Tokens</th></tr>"
    )
    iterations = record.iterations
    if not iterations:
        return '<h2>Iterations</h2>\n<p class="muted">No iterations recorded.</p>'
    shown: Sequence[IterationRecord | None] = iterations
    if len(iterations) > MAX_ROWS:
        head = 10
        shown = [*iterations[:head], None, *iterations[len(iterations) - (MAX_ROWS - head) :]]
    omitted = len(iterations) - sum(1 for it in shown if it is not None)
    rows = []
    for it in shown:
        if it is None:
            rows.append(
                f'<tr><td colspan="9" class="muted">… {omitted} iterations not shown; '
                "<code>outloop show</code> lists all</td></tr>"
            )
        else:
            rows.append(_iteration_row(it))
    body = "\n".join(rows)
    return (
        f'<h2>Iterations</h2>\n<table class="iterations">\n<thead>{header}</thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def _chart(record: RunRecord) -> str:
    """Failing tests per iteration as inline SVG bars (nothing to load, nothing to run)."""
    series = failing_series(record, MAX_CHART_POINTS)
    if series is None:
        return ""
    title, points, top = series.title, series.points, series.top
    bar, gap, height, label = 22, 6, 120, 16
    width = len(points) * (bar + gap) + gap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 2 * label}" '
        f'role="img" aria-label="{title}">'
    ]
    for index, (n, failing) in enumerate(points):
        x = gap + index * (bar + gap)
        h = round(height * failing / top)
        y = label + height - h
        colour = "#1a7f37" if failing == 0 else "#cf222e"
        parts += [
            f'<rect x="{x}" y="{y}" width="{bar}" height="{max(h, 1)}" fill="{colour}">'
            f"<title>iteration {n}: {failing} failing</title></rect>",
            f'<text x="{x + bar / 2:g}" y="{y - 3}" font-size="11" text-anchor="middle">'
            f"{failing}</text>",
            f'<text x="{x + bar / 2:g}" y="{height + 2 * label - 3}" font-size="11" '
            f'text-anchor="middle">{n}</text>',
        ]
    parts.append("</svg>")
    return f"<h2>{title}</h2>\n" + "\n".join(parts)


def _iteration_row(it: IterationRecord) -> str:
    agent = it.agent
    if agent is None:
        agent_cell = "—"
    elif agent.error is None:
        agent_cell = f"exit {agent.exit_code}" if agent.exit_code is not None else "ok"
    else:
        exit_part = f" (exit {agent.exit_code})" if agent.exit_code is not None else ""
        agent_cell = "⚠ " + _text(agent.error + exit_part, _CELL_CHARS)
    changed = "—" if it.n == 0 else str(len(it.changed_files))
    if it.skipped_files:
        changed += f" (+{len(it.skipped_files)} not committed)"
    failing = _failing(it.goal)
    tokens = None
    if agent is not None and (agent.input_tokens, agent.output_tokens) != (None, None):
        tokens = (agent.input_tokens or 0) + (agent.output_tokens or 0)
    goal_class = "" if it.goal is None else (' class="pass"' if it.goal.met else ' class="fail"')
    cells = [
        ("num", "0 (baseline)" if it.n == 0 else str(it.n)),
        ("", _code(it.commit[:12]) if it.commit else "—"),
        ("", agent_cell),
        ("num", changed),
        ("goal", _goal_cell(it.goal)),
        ("num", "—" if failing is None else str(failing)),
        ("num", duration_text(it.duration)),
        ("num", money_text(agent.cost_usd if agent else None)),
        ("num", "—" if tokens is None else f"{tokens:,}"),
    ]
    tds = "".join(
        f'<td class="{cls}">{value}</td>' if cls else f"<td>{value}</td>" for cls, value in cells
    )
    return f"<tr{goal_class}>{tds}</tr>"


def _last_output(record: RunRecord) -> str:
    final = next((it for it in reversed(record.iterations) if it.goal is not None), None)
    if final is None or final.goal is None:
        return ""
    goal = final.goal
    lines = [f"<h2>Last goal result (iteration {final.n})</h2>"]
    lines.append(f"<p>{_text(goal.summary or _goal_cell(goal), 1000)}</p>")
    if goal.failing:
        names = goal.failing[:MAX_FAILING_NAMES]
        lines.append("<ul>")
        lines += [f"<li>{_code(name)}</li>" for name in names]
        if len(goal.failing) > len(names):
            lines.append(f"<li>… and {len(goal.failing) - len(names)} more</li>")
        lines.append("</ul>")
    output = clean_tail(goal.output_tail, MAX_OUTPUT_BYTES)
    if output:
        lines.append(f"<pre>{html.escape(output, quote=False)}</pre>")
    if goal.log:
        lines.append(f'<p class="muted">Full output: {_code(goal.log)} in the run directory.</p>')
    return "\n".join(lines)


def _look_at_the_work(record: RunRecord) -> str:
    base, branch = clean_text(record.base_commit), clean_text(record.branch)
    commands = f"git log --oneline {base}..{branch}\ngit diff {base}..{branch}"
    return f"<h2>Look at the work</h2>\n<pre>{html.escape(commands, quote=False)}</pre>"


# -- words -------------------------------------------------------------------------


def _verdict_class(record: RunRecord) -> str:
    if record.goal_met:
        return "met"
    if record.stop_reason is None and record.state is RunState.RUNNING:
        return "running"
    return "not-met"


def _goal_cell(goal: GoalResult | None) -> str:
    if goal is None:
        return "—"
    if goal.met:
        return "✔ pass"
    return "⏱ timeout" if goal.timed_out else "✘ fail"


def _failing(goal: GoalResult | None) -> int | None:
    return goal.failing_count if goal is not None else None


def _text(value: str, limit: int = 300) -> str:
    """One line of untrusted text, cleaned, cut and escaped for element content."""
    text = " ".join(clean_text(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text)


def _code(value: str, limit: int = _CELL_CHARS) -> str:
    return f"<code>{_text(value, limit)}</code>"
