"""Work split over forked children: results in order, a failed child is None, none is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outloop_cli.process.forked import run_forked, usable_cores


def test_every_job_runs_once_and_the_results_come_back_in_order(tmp_path: Path) -> None:
    def job(n: int) -> tuple[int, int]:
        (tmp_path / f"ran-{n}").write_text(str(os.getpid()))
        return n * n, os.getpid()

    results = run_forked([lambda n=n: job(n) for n in range(4)])  # type: ignore[misc]

    assert [r[0] for r in results if r is not None] == [0, 1, 4, 9]
    pids = [int((tmp_path / f"ran-{n}").read_text()) for n in range(4)]
    # the first job in this process, the others each in a child of its own
    assert pids[0] == os.getpid() and len(set(pids)) == 4
    assert [r[1] for r in results if r is not None] == pids
    # every child was waited for (its own pid, not any child: other tests leave theirs)
    for pid in pids[1:]:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_child_whose_job_fails_gives_none_and_the_others_still_count() -> None:
    def boom() -> int:
        raise RuntimeError("no")

    def dies() -> int:
        os._exit(3)

    assert run_forked([lambda: 1, boom, dies, lambda: 4]) == [1, None, None, 4]


def test_a_failure_of_the_first_job_is_raised_after_the_children_are_reaped(
    tmp_path: Path,
) -> None:
    def first() -> int:
        raise ValueError("first")

    def second() -> int:
        (tmp_path / "child").write_text(str(os.getpid()))
        return 2

    with pytest.raises(ValueError, match="first"):
        run_forked([first, second])
    with pytest.raises(ChildProcessError):
        os.waitpid(int((tmp_path / "child").read_text()), os.WNOHANG)


def test_usable_cores_counts_the_affinity_mask() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
