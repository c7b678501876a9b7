"""The access-proxy section of the benchmark runs end to end on tiny inputs (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._common import BenchContext, find_outloop, interpreter_of
from bench.section_proxy import collect


@pytest.mark.slow
def test_the_proxy_section_measures_through_a_real_run(tmp_path: Path) -> None:
    outloop = find_outloop(None)
    ctx = BenchContext(
        outloop=outloop,
        python=interpreter_of(outloop),
        work=tmp_path / "work",
        cache=tmp_path / "cache",
        quick=True,
        seed=3,
    )
    section = collect(ctx)
    assert section.title == "Access proxy"
    names = [figure.name for figure in section.figures]
    assert names[0].startswith("throughput")
    assert [f.target_ratio for f in section.figures] == [0.8, None, None]
    for figure in section.figures:
        assert figure.measured.n == figure.floor.n == 2
        assert figure.measured.median > 0 and figure.floor.median > 0
    assert "added" in section.figures[1].note
    # every proxied request went through the run's broker and was audited there:
    # 20 + 1 warm-up requests, then 2 rounds of 1 + 50 + 1
    assert "125 `proxy_request` events" in section.how
    assert "before" in section.details and "after" in section.details
