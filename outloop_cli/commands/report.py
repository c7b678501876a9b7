"""``outloop report RUN --format junit|markdown|html``: a report of one recorded run.

Reports are rendered from ``run.json`` each time, not copied from the run
directory, so a report of a crashed run says "crashed" and every format is
available for every run, including runs recorded before a format existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.commands.run_ref import open_run
from outloop_cli.errors import UsageError
from outloop_cli.store.atomic import atomic_write_bytes
from outloop_cli.store.locks import effective_state
from outloop_cli.store.records import RunRecord

FORMATS = ("junit", "markdown", "html")


@dataclass(frozen=True)
class Report:
    """One run rendered in one format (``junit``, ``markdown``, ``html``), not yet written."""

    run_id: str
    format: str
    content: bytes


def render_report(cwd: Path, run_ref: str, fmt: str) -> Report:
    """Render the run ``run_ref`` (an id, or a unique prefix or suffix of one) as ``fmt``."""
    fmt = _check_format(fmt)
    run = open_run(cwd, run_ref)
    record = run.store.load(run.run_id)
    # a "running" record nobody holds any more is a crashed run, and says so
    record.state = effective_state(record, run.paths)
    return Report(run_id=run.run_id, format=fmt, content=_render(record, fmt))


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
