"""Read the JUnit XML a goal's test runner wrote: counts, failing names, cases.

Tolerant of the dialects in the wild (pytest, Surefire, Jest, go-junit-report):
root ``<testsuites>`` or ``<testsuite>``, nested suites, counts from the
cases themselves rather than from attributes that writers get wrong.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from outloop_cli.store.records import TestCase, TestCounts

MAX_DETAILS = 4000
MAX_CASES = 5000


class JUnitError(Exception):
    """The file is missing or not JUnit XML; the goal result says so."""


def _case_name(case: ET.Element) -> tuple[str, str]:
    return case.get("classname") or case.get("class") or "", case.get("name") or "?"


def display_name(classname: str, name: str) -> str:
    return f"{classname}::{name}" if classname else name


def read_junit(path: Path) -> tuple[TestCounts, list[TestCase]]:
    try:
        # expat (bundled with CPython >= 3.7.1) refuses entity-expansion bombs
        tree = ET.parse(path)
    except FileNotFoundError:
        raise JUnitError(f"the goal wrote no JUnit file at {path.name}") from None
    except (ET.ParseError, OSError) as exc:
        raise JUnitError(f"cannot read JUnit file {path.name}: {exc}") from None
    root = tree.getroot()
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"{path.name} is not JUnit XML (root element <{root.tag}>)")
    counts = TestCounts()
    cases: list[TestCase] = []
    for case in root.iter("testcase"):
        classname, name = _case_name(case)
        outcome = "passed"
        message: str | None = None
        details: str | None = None
        for child in case:
            tag = child.tag
            if tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = child.get("message")
                details = (child.text or "").strip()[-MAX_DETAILS:] or None
                if tag != "skipped":
                    break
        counts.total += 1
        if outcome == "passed":
            counts.passed += 1
        elif outcome == "failed":
            counts.failed += 1
        elif outcome == "error":
            counts.errors += 1
        else:
            counts.skipped += 1
        if len(cases) < MAX_CASES:
            try:
                seconds = float(case.get("time") or 0)
            except ValueError:
                seconds = 0.0
            cases.append(TestCase(classname, name, seconds, outcome, message, details))
    return counts, cases


_DURATION = re.compile(rb"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|secs)\b")
_ADDRESS = re.compile(rb"0x[0-9a-fA-F]{6,}")
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")


def normalise_output(data: bytes) -> bytes:
    """Output with run-to-run noise (timings, addresses, colours) removed, for stall detection."""
    data = _ANSI.sub(b"", data)
    data = _DURATION.sub(b"<t>", data)
    return _ADDRESS.sub(b"<addr>", data)
