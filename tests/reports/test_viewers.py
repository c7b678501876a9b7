"""outloop's junit.xml in the viewers people open it with: junitparser, junit2html, xunit-viewer.

Each is the real program (xunit-viewer from npm at the version pinned in
``.ci/install-report-viewers.sh``), reading the file outloop writes. A loop
that converged must read as passed in all three, with its earlier failed
attempts still shown; one that did not must read as failed. The control
renders Surefire's ``flakyFailure`` encoding, which outloop wrote before, to
show that xunit-viewer really does call such a case unknown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from outloop_cli.reports.junit import write_junit
from outloop_cli.store.records import RunRecord
from tests.conftest import RepoFactory
from tests.reports.test_reports import baseline_met, converged, never_converged
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, only_run, run_cli, runs_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
GOAL = "goal: pytest -q"
# the console script pip installed next to this interpreter
JUNIT2HTML = str(Path(sys.executable).parent / "junit2html")

# what outloop wrote for a converged goal before: Surefire's flaky reruns, then the output
FLAKY_ENCODING = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="outloop" tests="1" failures="0" errors="0" time="1.000">
  <testsuite name="outloop.fix" tests="1" failures="0" errors="0" skipped="0" time="1.000">
    <testcase classname="outloop.fix" name="goal: pytest -q" time="0.400">
      <flakyFailure message="iteration 0: exit 1" type="goal_not_met">
        <stackTrace>iteration 0: exit 1</stackTrace>
      </flakyFailure>
      <system-out>all good</system-out>
    </testcase>
  </testsuite>
</testsuites>
"""


@pytest.fixture(scope="session")
def xunit_viewer() -> Path:
    """The pinned xunit-viewer: .ci/run's (OUTLOOP_XUNIT_VIEWER), else installed by its script."""
    given = os.environ.get("OUTLOOP_XUNIT_VIEWER")
    if given:
        return Path(given)
    # session-scoped: this runs before the per-test fixtures move HOME into a temp dir,
    # so the script caches where a developer's next run finds it
    done = subprocess.run(
        ["bash", str(REPO_ROOT / ".ci" / "install-report-viewers.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def _write(tmp_path: Path, name: str, records: list[RunRecord]) -> Path:
    path = tmp_path / name
    write_junit(path, records)
    return path


def xunit_viewer_statuses(viewer: Path, report: Path, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The counts xunit-viewer puts in the page it renders, and each test's icon in its console view."""
    page = tmp_path / (report.stem + "-xunit-viewer.html")
    subprocess.run(
        [str(viewer), "-r", str(report), "-o", str(page)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    html = page.read_text()
    found = re.search(r'<meta name="description" content="([^"]*)">', html)
    assert found, "xunit-viewer's page has no summary"
    console = subprocess.run(
        [str(viewer), "-r", str(report), "-c", "-C", "false", "-n", "-o", str(tmp_path / "c.html")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    icons = {}
    for line in console.splitlines():
        match = re.match(r"^\s+(\S) (.+?)(?: time=[\d.]+)?\s*$", line)
        if match and match.group(1) in "✓✗!⊘?":
            icons[match.group(2)] = match.group(1)
    return found.group(1), icons


def junit2html_matrix(report: Path) -> dict[str, str]:
    done = subprocess.run(
        [JUNIT2HTML, str(report), "--summary-matrix"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcomes = {}
    for line in done.stdout.splitlines():
        match = re.match(r"^- (.+?)\s{2,}.*\s(Passed|Failed|Skipped|Untested|Error\w*)\s*$", line)
        if match:
            outcomes[match.group(1)] = match.group(2)
    return outcomes


def test_a_converged_goal_reads_as_passed_in_every_viewer(
    xunit_viewer: Path, tmp_path: Path
) -> None:
    from junitparser import JUnitXml

    report = _write(tmp_path, "converged.xml", [converged()])

    summary, icons = xunit_viewer_statuses(xunit_viewer, report, tmp_path)
    assert summary == "4 passed"
    assert icons[GOAL] == "✓"
    assert junit2html_matrix(report)[GOAL] == "Passed"
    (suite,) = list(JUnitXml.fromfile(str(report)))
    goal = next(case for case in suite if case.name == GOAL)
    assert goal.is_passed
    # the earlier attempts are still there to read, in the case's output
    assert "iteration 1: exit 1 after 0.4s; 1 passed, 2 failing of 3 tests" in (
        goal.system_out or ""
    )
    page = tmp_path / "converged.html"
    subprocess.run([JUNIT2HTML, str(report), str(page)], check=True, timeout=120)
    html = page.read_text()
    assert "goal met at iteration 3 after 3 failed attempts" in html
    assert re.search(r'class="outcome outcome-passed"><a href="#\w+">goal: pytest -q<', html)


def test_a_goal_never_met_reads_as_failed_in_every_viewer(
    xunit_viewer: Path, tmp_path: Path
) -> None:
    from junitparser import JUnitXml

    report = _write(tmp_path, "red.xml", [never_converged()])

    summary, icons = xunit_viewer_statuses(xunit_viewer, report, tmp_path)
    assert "unknown" not in summary
    assert icons[GOAL] == "✗"
    assert junit2html_matrix(report)[GOAL] == "Failed"
    (suite,) = list(JUnitXml.fromfile(str(report)))
    goal = next(case for case in suite if case.name == GOAL)
    assert not goal.is_passed


def test_a_goal_met_at_baseline_reads_as_passed(xunit_viewer: Path, tmp_path: Path) -> None:
    report = _write(tmp_path, "baseline.xml", [baseline_met()])

    summary, icons = xunit_viewer_statuses(xunit_viewer, report, tmp_path)
    assert "unknown" not in summary and "failure" not in summary
    assert icons[GOAL] == "✓"
    assert junit2html_matrix(report)[GOAL] == "Passed"


def test_a_real_converged_runs_report_reads_as_passed(
    xunit_viewer: Path, make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    report = runs_dir(repo) / only_run(repo)["run_id"] / "junit.xml"

    summary, icons = xunit_viewer_statuses(xunit_viewer, report, tmp_path)

    assert summary == "1 passed"
    assert list(icons.values()) == ["✓"]
    assert set(junit2html_matrix(report).values()) == {"Passed"}


def test_control_the_flaky_encoding_is_unknown_to_xunit_viewer(
    xunit_viewer: Path, tmp_path: Path
) -> None:
    report = tmp_path / "flaky.xml"
    report.write_bytes(FLAKY_ENCODING)

    summary, icons = xunit_viewer_statuses(xunit_viewer, report, tmp_path)

    assert summary == "1 flakyFailure"
    assert icons[GOAL] == "?"
    # while junit2html calls the same case passed: the viewers disagreed
    assert junit2html_matrix(report)[GOAL] == "Passed"
