"""bench/section_runner.py measures a loop's steady state, not the second after its checkout."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def section_runner() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("section_runner")


def test_turns_in_the_warm_up_are_not_measured() -> None:
    """30 ms turns for the first second (git's racy entries), then 15 ms: 15 ms is measured."""
    runner = section_runner()
    stamps = [i * 0.030 for i in range(40)]
    stamps += [stamps[-1] + (i + 1) * 0.015 for i in range(100)]
    timing = runner.RunTiming(wall=3.0, stamps=tuple(stamps), warmup=1.5)
    first, last = timing.steady
    assert stamps[first] >= 1.5 and stamps[first - 1] < 1.5 and last == len(stamps) - 1
    assert timing.per_iteration == pytest.approx(0.015)
    assert timing.measured == last - first
    # every turn counted, as the section did before: the warm-up's 30 ms pull the mean up
    everything = runner.RunTiming(wall=3.0, stamps=tuple(stamps), warmup=0.0)
    assert everything.per_iteration > 0.019


def test_a_run_too_short_for_its_warm_up_is_an_error_not_a_figure() -> None:
    runner = section_runner()
    timing = runner.RunTiming(wall=0.3, stamps=tuple(i * 0.03 for i in range(11)), warmup=1.5)
    with pytest.raises(SystemExit, match=r"no turn started 1\.5 s after the first"):
        _ = timing.per_iteration


@pytest.mark.parametrize("warm_turn", [0.011, 0.030, 0.075, 0.400])
def test_the_calibrated_count_leaves_enough_turns_past_the_warm_up(warm_turn: float) -> None:
    """A run as long as iterations_for asks, whose turns are as slow as the warm-up run's
    for the first second and twice as fast after it, still measures MIN_STEADY turns and
    STEADY_SECONDS of them."""
    runner = section_runner()
    count = runner.iterations_for(warm_turn)
    stamps, t = [], 0.0
    for _ in range(count):
        stamps.append(t)
        t += warm_turn if t < 1.0 else warm_turn / 2
    timing = runner.RunTiming(wall=t, stamps=tuple(stamps), warmup=runner.WARMUP_SECONDS)
    assert timing.measured >= runner.MIN_STEADY
    assert stamps[-1] - stamps[timing.steady[0]] >= runner.STEADY_SECONDS / 2


def test_a_calibration_run_times_its_turns() -> None:
    runner = section_runner()
    warm = runner.RunTiming(wall=1.0, stamps=(10.0, 10.05, 10.09), warmup=1.5)
    assert runner.turn_seconds(warm) == pytest.approx(0.045)
    with pytest.raises(SystemExit, match="at least two turns"):
        runner.turn_seconds(runner.RunTiming(wall=1.0, stamps=(10.0,), warmup=1.5))
