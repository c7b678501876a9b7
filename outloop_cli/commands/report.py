"""``outloop report RUN --format junit|markdown|html``: a report of one recorded run.

Reports are rendered from ``run.json`` each time, not copied from the run
directory, so a report of a crashed run says "crashed" and every format is
available for every run, including runs recorded before a format existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import OutloopError, UsageError
from outloop_cli.git.repo import discover
from outloop_cli.store.atomic import atomic_write_bytes
from outloop_cli.store.locks import effective_state
from outloop_cli.store.records import RunRecord
from outloop_cli.store.runs import RunStore

FORMATS = ("junit", "markdown", "html")
# how many runs an "unknown run" hint names
RECENT_RUNS_SHOWN = 5


@dataclass(frozen=True)
class Report:
    run_id: str
    format: str
    content: bytes


def render_report(cwd: Path, run_ref: str, fmt: str) -> Report:
    """Render the run ``run_ref`` (an id, or a unique prefix or suffix of one) as ``fmt``."""
    fmt = _check_format(fmt)
    store = RunStore(discover(cwd).common_dir)
    run_id = resolve_run(store, run_ref)
    record = store.load(run_id)
    # a "running" record nobody holds any more is a crashed run, and says so
    record.state = effective_state(record, store.paths(run_id))
    return Report(run_id=run_id, format=fmt, content=_render(record, fmt))


def write_report(report: Report, output: Path) -> Path:
    """Write the report to ``output`` atomically; a directory gets a file named for the run."""
    if output.is_dir():
        output = output / default_file_name(report)
    if not output.parent.is_dir():
        raise UsageError(
            f"cannot write {output}: directory {output.parent} does not exist",
            hint="create it first, or give another --output",
        )
    atomic_write_bytes(output, report.content, durable=False)
    return output


def default_file_name(report: Report) -> str:
    suffix = {"junit": "junit.xml", "markdown": "summary.md", "html": "report.html"}[report.format]
    return f"{report.run_id}-{suffix}"


def resolve_run(store: RunStore, run_ref: str) -> str:
    """``RunStore.resolve`` with a hint that names the runs there are."""
    try:
        return store.resolve(run_ref)
    except UsageError as exc:
        raise UsageError(exc.message, hint=_runs_hint(store, run_ref)) from None


def _runs_hint(store: RunStore, run_ref: str) -> str:
    ids = store.run_ids()
    if not ids:
        return "this repository has no runs yet; start one with `outloop run`"
    matches = [i for i in ids if i.startswith(run_ref) or i.endswith(run_ref)]
    if len(matches) > 1:
        return "give more of the run id; it matches " + ", ".join(matches[-RECENT_RUNS_SHOWN:])
    recent = ids[-RECENT_RUNS_SHOWN:][::-1]
    more = len(ids) - len(recent)
    tail = f"; {more} older in `outloop status`" if more > 0 else ""
    return "recent runs: " + ", ".join(_describe(store, run_id) for run_id in recent) + tail


def _describe(store: RunStore, run_id: str) -> str:
    try:
        record = store.load(run_id)
    except OutloopError:
        # a damaged record still has an id worth naming
        return f"{run_id} (unreadable)"
    reason = record.stop_reason.value if record.stop_reason else record.state.value
    return f"{run_id} ({record.loop}, {reason})"


def _check_format(fmt: str) -> str:
    wanted = fmt.strip().lower()
    aliases = {"md": "markdown", "xml": "junit", "htm": "html"}
    wanted = aliases.get(wanted, wanted)
    if wanted not in FORMATS:
        raise UsageError(
            f"unknown report format `{fmt}`", hint="choose one of: " + ", ".join(FORMATS)
        )
    return wanted


def _render(record: RunRecord, fmt: str) -> bytes:
    if fmt == "junit":
        from outloop_cli.reports.junit import render_junit

        return render_junit([record])
    if fmt == "markdown":
        from outloop_cli.reports.summary import render_summary

        return render_summary(record).encode("utf-8")
    from outloop_cli.reports.html import render_html

    return render_html(record).encode("utf-8")
