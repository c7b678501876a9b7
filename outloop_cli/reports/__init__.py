"""Reports of a run: JUnit XML for CI test views, markdown and HTML for humans."""

from outloop_cli.reports.html import render_html
from outloop_cli.reports.junit import clean_text, render_junit, write_junit
from outloop_cli.reports.summary import render_summaries, render_summary

__all__ = [
    "clean_text",
    "render_html",
    "render_junit",
    "render_summaries",
    "render_summary",
    "write_junit",
]
