"""The benchmarks still run end to end against the real CLI (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def bench(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_startup_benchmark_times_every_command_and_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "startup.md"

    done = bench("startup.py", "--repeat", "2", "--warmup", "1", "--write", str(report), cwd=ROOT)

    assert done.returncode == 0, done.stderr
    text = report.read_text()
    for command in ("python -c pass", "outloop --version", "outloop --help", "outloop validate"):
        assert re.search(rf"^\| `{re.escape(command)}` \| [\d.]+ \|", text, re.MULTILINE), command
    assert re.search(r"`outloop --version` takes [\d.]+× as long as `python -c pass`", text)
    assert "## Machine" in text
    # the reproduce command is the one that was run, minus the output option
    assert ".venv/bin/python bench/startup.py --repeat 2 --warmup 1\n" in text
    assert "summed by top-level package" in text


@pytest.mark.slow
def test_runner_benchmark_runs_both_variants_and_leaves_the_repo_clean(tmp_path: Path) -> None:
    report = tmp_path / "runner.md"
    cache = tmp_path / "cache"

    done = bench(
        "runner_overhead.py",
        "--sizes",
        "50",
        "--iterations",
        "2",
        "--repeat",
        "1",
        "--cache-dir",
        str(cache),
        "--breakdown",
        "--profile",
        "--write",
        str(report),
        cwd=ROOT,
    )

    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert re.search(r"^\| 50 \| [\d.]+ \(", text, re.MULTILINE), text
    assert re.search(r"\*\*[\d.]+×\*\* \((meets|misses) ≤ 1.5×\)", text)
    # the breakdown saw outloop's git commands and the raw script's commit
    assert "`git commit` | – | – | 1 |" in text
    assert re.search(r"`git status` \| \d", text)
    assert "`engine/" in text  # the profile reached the engine
    # the generated repository: 50 files and the loop file, all committed and checked out
    repo = cache / "repo-50"
    assert len(git(repo, "ls-files").split()) == 51
    assert git(repo, "status", "--porcelain") == ""
    # every run's worktree, branch and record was removed again
    assert git(repo, "worktree", "list").count("\n") == 1
    assert git(repo, "for-each-ref", "refs/heads/outloop/", "refs/heads/raw/") == ""
    assert not (repo / ".git" / "outloop").exists()
