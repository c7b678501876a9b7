"""`outloop demo`: the README's first command, end to end."""

from __future__ import annotations

from pathlib import Path

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


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")

    done = run_cli(tmp_path, "demo", "--dir", str(target))

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert (target / "keep.txt").read_text() == "mine\n"
