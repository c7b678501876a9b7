"""Start-up cost of the CLI: ``outloop --version`` against ``python -c pass``.

Every case is a real process started from the shell's point of view (the
installed console script), repeated many times in a shuffled, interleaved
order; we report medians and each case's ratio to the bare interpreter.
Target: ``outloop --version`` at most 3x ``python -c pass``.

    .venv/bin/python bench/startup.py                      # print the table
    .venv/bin/python bench/startup.py --write docs/bench-startup.md
    .venv/bin/python bench/startup.py --importtime         # where the time goes

With ``--hyperfine`` and hyperfine on PATH, hyperfine times the same
commands too, as a cross-check of our own timer.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Stats,
    find_outloop,
    interleaved_order,
    interpreter_of,
    isolated_env,
    machine_description,
    markdown_table,
    ms,
    reproduce_command,
    timed_run,
    utc_now,
)

TARGET_RATIO = 3.0
BASELINE = "python -c pass"

SMALL_LOOP = """\
description: a loop for the start-up benchmark
agent:
  preset: command
  command: ["/bin/sh", "-c", "true"]
  prompt: Make the goal pass.
goal:
  run: "true"
limits:
  max_iterations: 3
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    cwd: Path
    # the case whose ratio is held to the target
    target: bool = False


def make_small_repo(root: Path, env: dict[str, str]) -> Path:
    repo = root / "small-repo"
    (repo / ".outloop").mkdir(parents=True)
    (repo / ".outloop" / "check.yml").write_text(SMALL_LOOP)
    (repo / "README.md").write_text("a small repository\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo


def build_cases(outloop: Path, python: str, repo: Path) -> list[Case]:
    script = str(outloop)
    return [
        Case(BASELINE, (python, "-c", "pass"), repo),
        Case("outloop --version", (script, "--version"), repo, target=True),
        Case("outloop --help", (script, "--help"), repo),
        Case("outloop validate", (script, "validate"), repo),
    ]


def measure(
    cases: Sequence[Case], env: dict[str, str], repeat: int, warmup: int, seed: int
) -> dict[str, list[float]]:
    by_name = {case.name: case for case in cases}
    for case in cases:
        for _ in range(warmup):
            timed_run(case.argv, cwd=case.cwd, env=env)
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    for name in interleaved_order(list(by_name), repeat, seed):
        case = by_name[name]
        samples[name].append(timed_run(case.argv, cwd=case.cwd, env=env))
    return samples


def hyperfine_medians(
    cases: Sequence[Case], env: dict[str, str], repeat: int, work: Path
) -> dict[str, float] | None:
    """The same commands timed by hyperfine (no shell), or None when it is not installed."""
    binary = shutil.which("hyperfine")
    if binary is None:
        return None
    export = work / "hyperfine.json"
    argv = [
        binary,
        "--style",
        "none",
        "--shell",
        "none",
        "--warmup",
        "3",
        "--runs",
        str(repeat),
        "--export-json",
        str(export),
    ]
    for case in cases:
        argv += ["--command-name", case.name, subprocess.list2cmdline(case.argv)]
    subprocess.run(argv, cwd=cases[0].cwd, env=env, check=True, capture_output=True)
    results = json.loads(export.read_text())["results"]
    return {r["command"]: float(r["median"]) for r in results}


def results_table(
    cases: Sequence[Case], samples: dict[str, list[float]], hyperfine: dict[str, float] | None
) -> str:
    base = Stats.of(samples[BASELINE]).median
    header = ["command", "median ms", "q1–q3 ms", "× python -c pass"]
    if hyperfine is not None:
        header.append("hyperfine median ms")
    rows = []
    for case in cases:
        stats = Stats.of(samples[case.name])
        ratio = stats.median / base
        verdict = ""
        if case.target:
            verdict = f" ({'meets' if ratio <= TARGET_RATIO else 'misses'} ≤ {TARGET_RATIO:g}×)"
        row = [
            f"`{case.name}`",
            ms(stats.median),
            f"{ms(stats.q1)}–{ms(stats.q3)}",
            f"{ratio:.2f}×{verdict}",
        ]
        if hyperfine is not None:
            row.append(ms(hyperfine[case.name]))
        rows.append(row)
    return markdown_table(header, rows)


_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


IMPORTTIME_RUNS = 7


def _import_times(argv: Sequence[str], python: str, cwd: Path, env: dict[str, str]) -> Counter[str]:
    """Microseconds of import time by top-level package (each module's own time) in one run."""
    # the console script is a Python file: run it under -X importtime directly
    done = subprocess.run(
        [python, "-X", "importtime", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    times: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            self_us, _, _, module = match.groups()
            times[module.split(".")[0]] += int(self_us)
    return times


def import_profile(argv: Sequence[str], python: str, cwd: Path, env: dict[str, str]) -> str:
    """Import time of one command by top-level package: medians of a few ``-X importtime`` runs."""
    runs = [_import_times(argv, python, cwd, env) for _ in range(IMPORTTIME_RUNS)]
    packages = set().union(*runs)
    medians = {name: statistics.median(run[name] for run in runs) for name in packages}
    total = statistics.median(sum(run.values()) for run in runs)
    heaviest = sorted(medians.items(), key=lambda item: -item[1])[:12]
    rows = [[f"`{name}`", f"{us / 1000:.1f}"] for name, us in heaviest]
    shown = " ".join([Path(argv[0]).name, *argv[1:]])
    return (
        f"`{shown}`: {total / 1000:.1f} ms of imports (median of {IMPORTTIME_RUNS} runs of "
        "`python -X importtime`; each module's own time, summed by top-level package):\n\n"
        + markdown_table(["package", "ms"], rows)
    )


def render_doc(
    *,
    table: str,
    machine: str,
    command: str,
    repeat: int,
    imports: str,
    verdict: str,
) -> str:
    return f"""# Benchmark: CLI start-up

Generated by `bench/startup.py` on {utc_now()}; see `bench/README.md`.

**Question:** what does a user pay to start `outloop`? Target: `outloop --version`
takes at most {TARGET_RATIO:g}× as long as `python -c pass` with the same interpreter.

**Method:** each command is started as a real process ({repeat} runs each after 3
warm-up runs, in a shuffled order that changes every round so drifts of the
machine hit every case alike), stdout and stderr discarded, with user state (HOME,
XDG dirs, git config) moved to a temporary directory. `outloop validate` runs in a
small git repository with one valid loop file. We report the median and the
interquartile range.

## Result

{verdict}

{table}
## Where the time goes

{imports}
## Machine

{machine}
## Reproduce

```sh
{command}
```
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=40, help="runs per command (default 40)")
    parser.add_argument("--warmup", type=int, default=3, help="discarded runs per command")
    parser.add_argument("--seed", type=int, default=1, help="seed of the interleaving order")
    parser.add_argument("--outloop", help="the outloop console script to time")
    parser.add_argument(
        "--hyperfine", action="store_true", help="also time with hyperfine when installed"
    )
    parser.add_argument(
        "--importtime",
        action="store_true",
        help="print the heaviest imports of each outloop command",
    )
    parser.add_argument("--write", type=Path, help="write the markdown report to this file")
    args = parser.parse_args(argv)

    outloop = find_outloop(args.outloop)
    python = interpreter_of(outloop)
    with tempfile.TemporaryDirectory(prefix="outloop-bench-startup-") as tmp:
        work = Path(tmp)
        env = isolated_env(work / "home")
        repo = make_small_repo(work, env)
        cases = build_cases(outloop, python, repo)
        samples = measure(cases, env, args.repeat, args.warmup, args.seed)
        hyperfine = hyperfine_medians(cases, env, args.repeat, work) if args.hyperfine else None
        if args.hyperfine and hyperfine is None:
            print(
                "note: hyperfine is not installed; timing with our own timer only", file=sys.stderr
            )
        table = results_table(cases, samples, hyperfine)
        imports = ""
        if args.importtime or args.write:
            imports = "\n".join(
                import_profile(case.argv, python, repo, env)
                for case in cases
                if case.name != BASELINE
            )
    base = Stats.of(samples[BASELINE]).median
    target_case = next(case for case in cases if case.target)
    ratio = Stats.of(samples[target_case.name]).median / base
    verdict = (
        f"`{target_case.name}` takes {ratio:.2f}× as long as `{BASELINE}`: "
        + ("within" if ratio <= TARGET_RATIO else "**over**")
        + f" the target of {TARGET_RATIO:g}×."
    )
    print(verdict)
    print()
    print(table)
    if args.importtime:
        print(imports)
    if args.write:
        command = reproduce_command("bench/startup.py", sys.argv[1:] if argv is None else argv)
        doc = render_doc(
            table=table,
            machine=machine_description(outloop, python),
            command=command,
            repeat=args.repeat,
            imports=imports,
            verdict=verdict,
        )
        args.write.write_text(doc)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
