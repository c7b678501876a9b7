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
