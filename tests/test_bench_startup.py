"""bench/section_startup.py and bench/section_credential_helper.py run end to end (quick).

No timing is asserted: each section must measure every figure against its
floor with the real console script, and say what it measured.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def section(name: str) -> ModuleType:
    """A bench module, imported as bench/run.py imports it (bench/ on sys.path)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def context(tmp_path: Path) -> object:
    common = section("_common")
    outloop = common.find_outloop(None)
    (tmp_path / "work").mkdir()
    return common.BenchContext(
        outloop=outloop,
        python=common.interpreter_of(outloop),
        work=tmp_path / "work",
        cache=tmp_path / "cache",
        quick=True,
        seed=1,
    )


def test_the_startup_section_times_help_validate_and_status(tmp_path: Path) -> None:
    result = section("section_startup").collect(context(tmp_path))
    names = [figure.name for figure in result.figures]
    assert names == [
        "outloop --help",
        "outloop validate",
        "outloop status",
        "outloop --version",
        "outloop status, no listing cache",
        "python -c 'import typer'",
        "python -c 'import dataclasses, datetime, json, pathlib, subprocess'",
        "python -c 'import dataclasses, pathlib, subprocess, yaml'",
    ]
    for figure in result.figures:
        assert figure.floor_name == "`python -c pass`"
        assert figure.measured.n == figure.floor.n == 3
        # the unit says ms: a process start takes a few of them, not a few thousandths
        assert figure.unit == "ms"
        assert 1 < figure.floor.median < 10_000 and 1 < figure.measured.median < 10_000
    assert [f.target_ratio for f in result.figures] == [4.0, 5.0, 6.0, None, None, None, None, None]
    assert "summed by top-level package" in result.details
    # the dataclasses validate makes on its way were counted and timed in a real run
    made = re.search(r"`validate` makes (\d+) frozen dataclasses", result.details)
    assert made is not None and int(made.group(1)) > 10, result.details
    # the status repository holds real runs, as `outloop run` wrote them
    runs = list((tmp_path / "cache").glob("status-runs-*/repo/.git/outloop/runs/*/run.json"))
    assert len(runs) == 3
    # the runs are old enough to be kept: the warm status ran from the cache they left
    caches = list((tmp_path / "cache").glob("status-runs-*/repo/.git/outloop/listing-cache.json"))
    assert len(caches) == 1
    assert sorted(json.loads(caches[0].read_text())["runs"]) == sorted(
        run.parent.name for run in runs
    )


@pytest.mark.parametrize("quick", [True])
def test_the_credential_helper_section_pushes_through_the_broker(
    tmp_path: Path, quick: bool
) -> None:
    result = section("section_credential_helper").collect(context(tmp_path))
    push, alone, old = result.figures
    assert push.target_ratio == 1.5
    assert "trivial shell credential helper" in push.floor_name
    assert push.measured.n == push.floor.n == 3
    assert alone.floor_name == old.floor_name == "`python -c pass`"
    for figure in result.figures:
        assert figure.unit == "ms"
        assert 1 < figure.floor.median < 10_000 and 1 < figure.measured.median < 10_000
    # every push and every helper-alone run asked the broker, which granted and audited it
    assert "The broker granted" in result.details
    granted = int(result.details.split("The broker granted ")[1].split()[0])
    assert granted >= 3 * 3 + 2
