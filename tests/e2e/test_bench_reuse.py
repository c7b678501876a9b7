"""bench/section_reuse.py runs end to end on tiny repositories (no timing is asserted)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reuse_section_measures_both_figures_against_their_floors(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import section_reuse
        from _common import BenchContext, interpreter_of
    finally:
        sys.path.remove(str(ROOT / "bench"))
    outloop = Path(sys.executable).parent / "outloop"
    found = shutil.which("outloop")
    if not outloop.is_file() and found:
        outloop = Path(found)
    ctx = BenchContext(
        outloop=outloop,
        python=interpreter_of(outloop),
        work=tmp_path / "work",
        cache=tmp_path / "cache",
        quick=True,
        seed=3,
    )

    section = section_reuse.collect(ctx)

    start, fresh, jobs, scaling = section.figures
    assert "with a finished run's worktree" in start.name
    assert start.floor_name.startswith("fresh `git worktree add`")
    assert start.target_ratio == 0.1
    assert "fresh checkout" in fresh.name and fresh.target_ratio is None
    assert jobs.target_ratio == 1.3
    assert "--jobs" in jobs.name
    assert "one after another" in scaling.name and scaling.target_ratio is None
    for figure in section.figures:
        assert figure.measured.n >= 1 and figure.floor.n >= 1
        assert figure.measured.median > 0 and figure.floor.median > 0
    # the measured starts really took a worktree over (the section refuses otherwise)
    assert "taking the previous run's worktree over" in section.details
