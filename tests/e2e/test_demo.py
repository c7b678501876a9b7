"""`outloop demo`: the README's first command, end to end."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from outloop_cli.templates_dir import demo_project_dir
from tests.conftest import git
from tests.support.e2e import run_cli


def test_demo_converges_in_three_iterations_and_shows_the_branch_log(tmp_path: Path) -> None:
    target = tmp_path / "demo"

    done = run_cli(tmp_path, "demo", "--dir", str(target), timeout=180)

    assert done.returncode == 0, done.stderr
    assert "scripted stand-in" in done.stderr
    assert "stopped: goal_met" in done.stderr
    subjects = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if ": " in line]
    assert subjects == [
        "outloop(fix-tests): iteration 3 — goal met",
        "outloop(fix-tests): iteration 2 — goal not met",
        "outloop(fix-tests): iteration 1 — goal not met",
    ]
    # the demo repository's own checkout stays as it was created: clean, on its branch
    assert git(target, "status", "--porcelain") == ""
    assert git(target, "rev-list", "--count", "HEAD").strip() == "1"
    runs = list((target / ".git" / "outloop" / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "summary.md").read_text().count("goal met") >= 1


def test_the_demos_first_report_shows_the_loop_converging(tmp_path: Path) -> None:
    target = tmp_path / "demo"

    done = run_cli(tmp_path, "demo", "--dir", str(target), timeout=180)

    assert done.returncode == 0, done.stderr
    (run_dir,) = (target / ".git" / "outloop" / "runs").iterdir()
    summary = (run_dir / "summary.md").read_text()
    chart = summary[summary.index("```mermaid") :]
    assert 'title "Failing tests per iteration"' in chart
    assert "bar [3, 2, 1, 0]" in chart
    page = target / "report.html"
    shown = run_cli(target, "report", run_dir.name, "--format", "html", "--output", str(page))
    assert shown.returncode == 0, shown.stderr
    html = page.read_text()
    assert "<h2>Failing tests per iteration</h2>" in html
    for n, failing in enumerate([3, 2, 1, 0]):
        assert f"<title>iteration {n}: {failing} failing</title>" in html
    # junit.xml lists the project's own tests, all passing, after the goal's case
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("16", "0", "0")
    names = [case.get("name") for case in suite.iter("testcase")]
    assert "test_slugify_trims_separators" in names


def test_the_demo_goal_needs_nothing_but_the_standard_library(tmp_path: Path) -> None:
    """A fresh machine has only `pip install -e .`'s venv: no pytest, no junit writer."""
    project = tmp_path / "project"
    shutil.copytree(demo_project_dir(), project)

    # -S: no site-packages at all; -E, -s: nothing from PYTHON* variables or the user
    done = subprocess.run(
        [sys.executable, "-S", "-E", "-s", "-B", "-m", "tests.junit_report", "out/junit.xml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1, done.stderr
    assert re.search(r"^FAILED \(failures=3\)$", done.stderr, re.MULTILINE)
    suite = ET.parse(project / "out" / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("15", "3", "0")
    failed = sorted(
        case.get("name", "") for case in suite.iter("testcase") if case.find("failure") is not None
    )
    assert failed == [
        "test_median_even",
        "test_slugify_trims_separators",
        "test_to_roman_subtractive",
    ]


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")

    done = run_cli(tmp_path, "demo", "--dir", str(target))

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert (target / "keep.txt").read_text() == "mine\n"
