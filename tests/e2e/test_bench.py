"""The benchmarks still run end to end against the real CLI (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_runner_section_measures_outloop_against_the_raw_loop_on_a_cloned_repo(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(BENCH))
    from _common import BenchContext, find_outloop, interpreter_of
    from section_runner import collect

    outloop = find_outloop(None)
    work = tmp_path / "work"
    work.mkdir()

    section = collect(
        BenchContext(
            outloop=outloop,
            python=interpreter_of(outloop),
            work=work,
            cache=tmp_path / "cache",
            quick=True,
            seed=1,
        )
    )

    names = [f.name for f in section.figures]
    assert names == ["cost per iteration, 50 files", "sandbox cost per iteration, 50 files (info)"]
    cost = section.figures[0]
    assert cost.target_ratio == 1.2 and cost.measured.median > 0 and cost.floor.median > 0
    assert "bwrap" in cost.floor_name
    assert "sandbox included" in section.how
    # the breakdown saw outloop's git and the raw loop's commit
    assert re.search(r"`git commit` \| – \| – \| 1 \|", section.details), section.details
    assert re.search(r"`git status` \| 2 \|", section.details)
    # a pristine repository with its history stays cached; the clones are gone
    pristine = tmp_path / "cache" / "realistic-50-h5"
    assert int(git(pristine, "rev-list", "--count", "HEAD").strip()) == 6
    assert not (work / "clone-50").exists()
