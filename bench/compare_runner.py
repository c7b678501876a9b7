"""The runner's cost per iteration at an earlier commit and now, side by side with the raw loop.

    .venv/bin/python bench/compare_runner.py BASE [--sizes 1000,10000] [--repeat 4]
                                              [--iterations N] [--cache-dir DIR]

How a change to the hot path is measured before it lands: BASE (any revision) is
checked out into a temporary git worktree, and it and the working tree each run
`outloop run` from the same venv (a wrapper puts the checkout first on the path),
interleaved in a shuffled order with ``bench/raw_git_loop.sh``, on the runner
section's repositories and loop (``section_runner.py``). Prints one markdown table:
per size, the median [interquartile range] ms per iteration of each, and each
outloop's ratio to the raw loop. No figure goes into docs/benchmarks.md; commit
messages and closing notes quote these tables.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Stats, interleaved_order, isolated_env, markdown_table
from repos import realistic_repo
from section_runner import (
    HISTORY,
    WARMUP_SECONDS,
    Runner,
    clean_repo,
    iterations_for,
    prepare_clone,
    turn_seconds,
)

ROOT = Path(__file__).resolve().parent.parent


def _wrapper(path: Path, checkout: Path) -> Path:
    """An `outloop` executable that runs ``checkout``'s code with this venv's Python."""
    path.write_text(
        f'#!/bin/sh\nPYTHONPATH="{checkout}" exec "{sys.executable}" -m outloop_cli "$@"\n'
    )
    path.chmod(0o755)
    return path


def _cell(stats: Stats) -> str:
    return f"{stats.median:.1f} [{stats.q1:.1f}–{stats.q3:.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare with (a commit, a tag, HEAD~3)")
    parser.add_argument("--sizes", default="1000,10000", help="tracked files, comma-separated")
    parser.add_argument("--repeat", type=int, default=4, help="interleaved rounds per size")
    parser.add_argument(
        "--iterations",
        type=int,
        help="iterations of each run (default: calibrated as the runner section does); only "
        f"turns {WARMUP_SECONDS:g} s after a run's first are measured",
    )
    parser.add_argument("--cache-dir", type=Path, help="where the repositories are kept")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="outloop-compare-"))
    cache = args.cache_dir or work / "cache"
    base = work / "base"
    try:
        subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "worktree",
                "add",
                "--detach",
                "--quiet",
                str(base),
                args.base,
            ],
            check=True,
        )
        env = isolated_env(work / "home")
        runners = {
            "base": Runner(outloop=_wrapper(work / "outloop-base", base), work=work, env=env),
            "now": Runner(outloop=_wrapper(work / "outloop-now", ROOT), work=work, env=env),
        }
        rows = []
        for n in sizes:
            repo = prepare_clone(
                realistic_repo(cache, n, env, history=HISTORY), work / f"clone-{n}", env
            )
            cases = ("base", "now", "raw")
            warm_turns: list[float] = []
            for case in cases:  # one unmeasured run each: page cache, object store, a turn
                runner = runners["now" if case == "raw" else case]
                warm = runner.run("raw" if case == "raw" else "outloop", repo, 3, "warmup")
                warm_turns.append(turn_seconds(warm))
                clean_repo(repo, env)
            iterations = args.iterations or iterations_for(min(warm_turns))
            samples: dict[str, list[float]] = {c: [] for c in cases}
            for i, case in enumerate(interleaved_order(cases, args.repeat, n)):
                runner = runners["now" if case == "raw" else case]
                variant = "raw" if case == "raw" else "outloop"
                timing = runner.run(variant, repo, iterations, f"c{i}")
                samples[case].append(timing.per_iteration * 1000)
                clean_repo(repo, env)
            stats = {c: Stats.of(samples[c]) for c in cases}
            raw = stats["raw"].median
            rows.append(
                [
                    f"{n:,}",
                    _cell(stats["base"]),
                    _cell(stats["now"]),
                    _cell(stats["raw"]),
                    f"{stats['base'].median / raw:.2f}×",
                    f"{stats['now'].median / raw:.2f}×",
                ]
            )
            shutil.rmtree(repo)
        print(
            f"ms per iteration past a {WARMUP_SECONDS:g} s warm-up, median [IQR] of "
            f"{args.repeat} interleaved rounds; base = {args.base}, now = the working tree\n"
        )
        print(
            markdown_table(["files", "base", "now", "raw loop", "base / raw", "now / raw"], rows),
            end="",
        )
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
        )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
