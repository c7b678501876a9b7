"""bench/section_sandbox.py: each protection it prices is taken out of a real run's line alone."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def section_sandbox() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("section_sandbox")


def test_each_protection_leaves_the_rest_of_the_line_as_it_was(tmp_path: Path) -> None:
    bench = section_sandbox()
    repo, worktree = bench.proc_repo(tmp_path)
    full = bench.run_view(["true"], repo, worktree, tmp_path)
    taken_by: dict[int, str] = {}
    for name, without in bench.PROTECTIONS.items():
        shorter = without(full)
        # what is left is the full line with some words taken out, in the same order
        gone, j = [], 0
        for i, word in enumerate(full):
            if j < len(shorter) and shorter[j] == word:
                j += 1
            else:
                gone.append(i)
        assert j == len(shorter) and gone, name
        # the command after `--` is untouched, and no two protections share a word
        assert shorter[shorter.index("--") :] == full[full.index("--") :], name
        for i in gone:
            assert i not in taken_by, f"{name} takes out what {taken_by[i]} does"
            taken_by[i] = name


def test_the_priced_line_runs_and_each_shorter_one_too(tmp_path: Path) -> None:
    bench = section_sandbox()
    repo, worktree = bench.proc_repo(tmp_path)
    full = bench.run_view(["true"], repo, worktree, tmp_path)
    for argv in (full, *(without(full) for without in bench.PROTECTIONS.values())):
        assert subprocess.run(argv, check=False).returncode == 0
    assert bench._spawn(full, keyring=True) > 0
