"""Start-up cost of the CLI: ``--help``, ``validate`` and ``status`` against ``python -c pass``.

Every case is a real process (the installed console script), repeated in a
shuffled, interleaved order with the bare interpreter as its floor; we report
medians and each case's ratio to ``python -c pass`` with the same interpreter.

- ``outloop --help``: the top-level help (target ≤ 4×);
- ``outloop validate``: one loop file in a small repository (target ≤ 5×);
- ``outloop status``: a repository holding 100 runs made by real ``outloop run``
  invocations (built once, cached under ``ctx.cache``; target ≤ 6×);
- ``outloop --version``: for information.

    .venv/bin/python bench/section_startup.py            # print the figures
    .venv/bin/python bench/section_startup.py --quick    # tiny inputs, few repeats
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchContext,
    Figure,
    Section,
    Stats,
    find_outloop,
    interleaved_order,
    interpreter_of,
    isolated_env,
    markdown_table,
    timed_run,
)

FLOOR = "python -c pass"
STATUS_RUNS = 100
QUICK_STATUS_RUNS = 3
# bump when the way the cached run repository is made changes
CACHE_VERSION = 1

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

# Two loops whose runs look like users' runs: one meets its goal on the second
# turn, the other fails its goal until it hits max_iterations.
RUN_LOOPS = {
    "fix": """\
description: append notes until there are two lines
agent:
  preset: command
  command: ["/bin/sh", "-c", "echo note >> notes.txt"]
  prompt: Add a note.
goal:
  run: "test $(wc -l < notes.txt) -ge 2"
limits:
  max_iterations: 4
""",
    "grind": """\
description: a goal that never passes
agent:
  preset: command
  command: ["/bin/sh", "-c", "date +%N >> log.txt"]
  prompt: Try again.
goal:
  run: "exit 1"
limits:
  max_iterations: 3
""",
}

# (figure name, argv after the script, which repository, target ratio)
CASES: tuple[tuple[str, tuple[str, ...], str, float | None], ...] = (
    ("outloop --help", ("--help",), "small", 4.0),
    ("outloop validate", ("validate",), "small", 5.0),
    ("outloop status", ("status",), "runs", 6.0),
    ("outloop --version", ("--version",), "small", None),
)

# Measured with this section on the code before the start-up work of issue 16 (commit
# faae4e2), 25 interleaved repeats, on the shared 2-core machine; floor 13.8 ms.
BEFORE = {
    "outloop --help": "143.9 ms (10.4×)",
    "outloop validate": "328.0 ms (23.8×)",
    "outloop status": "328.1 ms (23.8×)",
    "outloop --version": "24.0 ms (1.7×)",
}


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    cwd: Path
    target: float | None
    # run, untimed, before each run of the case
    before: Callable[[], None] | None = None


def _git(repo: Path, env: Mapping[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=dict(env), check=True, capture_output=True)


def startup_env(home: Path) -> dict[str, str]:
    """The isolated environment, without ``PYTHON*`` variables.

    ``PYTHONDONTWRITEBYTECODE`` (common in containers and CI images) would have
    every run compile every module from source, which no installed copy does.
    """
    env = isolated_env(home)
    for name in [key for key in env if key.startswith("PYTHON")]:
        del env[name]
    return env


def make_small_repo(root: Path, env: Mapping[str, str]) -> Path:
    repo = root / "small-repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / ".outloop").mkdir(parents=True)
    (repo / ".outloop" / "check.yml").write_text(SMALL_LOOP)
    (repo / "README.md").write_text("a small repository\n")
    _git(repo, env, "init", "-q", "-b", "main")
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-q", "-m", "initial")
    return repo


def runs_repo(outloop: Path, cache: Path, runs: int) -> tuple[Path, dict[str, str]]:
    """A repository with ``runs`` finished runs, each made by a real ``outloop run``.

    Built once and kept in ``cache`` with the home its runs registered in
    (their worktrees live under its XDG state directory), so later benchmarks
    read exactly what outloop wrote.
    """
    root = cache / f"status-runs-v{CACHE_VERSION}-{runs}"
    repo = root / "repo"
    if (root / "complete").exists():
        return repo, startup_env(root / "home")
    if root.exists():
        shutil.rmtree(root)
    env = startup_env(root / "home")
    (repo / ".outloop").mkdir(parents=True)
    for name, text in RUN_LOOPS.items():
        (repo / ".outloop" / f"{name}.yml").write_text(text)
    (repo / "README.md").write_text("a repository with many runs\n")
    _git(repo, env, "init", "-q", "-b", "main")
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-q", "-m", "initial")
    loops = sorted(RUN_LOOPS)
    for index in range(runs):
        # `grind` ends at max_iterations (exit 1), `fix` meets its goal (exit 0)
        timed_run(
            (str(outloop), "run", loops[index % len(loops)]), cwd=repo, env=env, ok_codes=(0, 1)
        )
    (root / "complete").write_text(f"{runs} runs\n")
    return repo, env


TYPER = "python -c 'import typer'"
STATUS_COLD = "outloop status, no listing cache"
# what the two plain verbs cannot start without, outloop's own code aside: the record and
# config types are frozen dataclasses, run.json is JSON, git runs through subprocess;
# validate reads YAML
STATUS_IMPORTS = "dataclasses, datetime, json, pathlib, subprocess"
VALIDATE_IMPORTS = "dataclasses, pathlib, subprocess, yaml"
STATUS_FLOOR = f"python -c 'import {STATUS_IMPORTS}'"
VALIDATE_FLOOR = f"python -c 'import {VALIDATE_IMPORTS}'"


def build_cases(ctx: BenchContext, small: Path, runs: Path) -> list[Case]:
    repos = {"small": small, "runs": runs}
    cases = [Case(FLOOR, (ctx.python, "-c", "pass"), small, None)]
    for name, args, repo, target in CASES:
        cases.append(Case(name, (str(ctx.outloop), *args), repos[repo], target))
    # every other status run finds the listing cache its warm-up (or the run before) wrote
    cache = runs / ".git" / "outloop" / "listing-cache.json"
    cases.append(
        Case(
            STATUS_COLD,
            (str(ctx.outloop), "status"),
            runs,
            None,
            before=lambda: cache.unlink(missing_ok=True),
        )
    )
    # what every verb parsed by typer pays before outloop's own code runs
    cases.append(Case(TYPER, (ctx.python, "-c", "import typer"), small, None))
    cases.append(Case(STATUS_FLOOR, (ctx.python, "-c", f"import {STATUS_IMPORTS}"), runs, None))
    cases.append(
        Case(VALIDATE_FLOOR, (ctx.python, "-c", f"import {VALIDATE_IMPORTS}"), small, None)
    )
    return cases


_DATACLASS_COST = """\
from outloop_cli.cli.deferred_modules import defer_rarely_used
defer_rarely_used()  # as the plain verbs' start does, before dataclasses imports inspect
import dataclasses, sys, time
made = []
build = dataclasses._process_class
def timed(cls, *args, **kwargs):
    start = time.perf_counter()
    try:
        return build(cls, *args, **kwargs)
    finally:
        made.append(time.perf_counter() - start)
dataclasses._process_class = timed
start = time.perf_counter()
from outloop_cli.main import main
code = main(sys.argv[1:])
total = time.perf_counter() - start
print(len(made), sum(made), total, code, file=sys.stderr)
"""


def dataclass_cost(
    args: Sequence[str], python: str, cwd: Path, env: Mapping[str, str], runs: int
) -> tuple[int, float, float]:
    """(dataclasses made, ms making them, ms of the whole command) in-process, medians."""
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-c", _DATACLASS_COST, *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )
        count, spent, total, _ = done.stderr.strip().splitlines()[-1].split()
        samples.append((int(count), float(spent) * 1000, float(total) * 1000))
    return (
        samples[0][0],
        statistics.median(s[1] for s in samples),
        statistics.median(s[2] for s in samples),
    )


def measure(
    cases: Sequence[Case],
    envs: Mapping[str, Mapping[str, str]],
    repeat: int,
    warmup: int,
    seed: int,
) -> dict[str, list[float]]:
    by_name = {case.name: case for case in cases}
    for case in cases:
        for _ in range(warmup):
            if case.before is not None:
                case.before()
            timed_run(case.argv, cwd=case.cwd, env=envs[case.name])
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    for name in interleaved_order(list(by_name), repeat, seed):
        case = by_name[name]
        if case.before is not None:
            case.before()
        samples[name].append(timed_run(case.argv, cwd=case.cwd, env=envs[name]))
    return samples


_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_times(
    argv: Sequence[str], python: str, cwd: Path, env: Mapping[str, str]
) -> Counter[str]:
    """Microseconds of import time by top-level package (each module's own time) in one run."""
    done = subprocess.run(
        [python, "-X", "importtime", *argv],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
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


def import_profile(
    name: str, argv: Sequence[str], python: str, cwd: Path, env: Mapping[str, str], runs: int
) -> str:
    """Import time of one command by top-level package: medians of a few ``-X importtime`` runs."""
    samples = [import_times(argv, python, cwd, env) for _ in range(runs)]
    packages = set().union(*samples)
    medians = {pkg: statistics.median(run[pkg] for run in samples) for pkg in packages}
    total = statistics.median(sum(run.values()) for run in samples)
    heaviest = sorted(medians.items(), key=lambda item: -item[1])[:10]
    rows = [[f"`{pkg}`", f"{us / 1000:.1f}"] for pkg, us in heaviest]
    return (
        f"`{name}`: {total / 1000:.1f} ms of imports (median of {runs} runs of "
        "`python -X importtime`; each module's own time, summed by top-level package):\n\n"
        + markdown_table(["package", "ms"], rows)
    )


def collect(ctx: BenchContext) -> Section:
    repeat, warmup = (3, 1) if ctx.quick else (25, 3)
    run_count = QUICK_STATUS_RUNS if ctx.quick else STATUS_RUNS
    small_env = startup_env(ctx.work / "home")
    small = make_small_repo(ctx.work, small_env)
    runs, runs_env = runs_repo(ctx.outloop, ctx.cache, run_count)
    cases = build_cases(ctx, small, runs)
    envs = {case.name: runs_env if case.cwd == runs else small_env for case in cases}
    samples = measure(cases, envs, repeat, warmup, ctx.seed)
    # timed in seconds, reported in ms
    floor = Stats.of([t * 1000 for t in samples[FLOOR]])
    figures = []
    for case in cases[1:]:
        what = {
            "outloop --help": "top-level help, stdout discarded",
            "outloop validate": "one valid loop file in a small git repository",
            "outloop status": f"the table of {run_count} finished runs made by `outloop run`; "
            "the listing cache as an earlier `status` left it",
            STATUS_COLD: "for information: the same, the listing cache deleted before each run "
            "(every run.json read, and the cache written)",
            "outloop --version": "for information: answered before typer is imported",
            TYPER: "for information: the CLI framework alone, paid by every verb it parses",
            STATUS_FLOOR: "for information: the standard library `status` cannot start without",
            VALIDATE_FLOOR: "for information: the standard library and PyYAML `validate` "
            "cannot start without",
        }[case.name]
        figures.append(
            Figure(
                name=case.name,
                measured=Stats.of([t * 1000 for t in samples[case.name]]),
                floor_name=f"`{FLOOR}`",
                floor=floor,
                unit="ms",
                target_ratio=case.target,
                note=what,
            )
        )
    profile_runs = 1 if ctx.quick else 5
    profiles = "\n".join(
        import_profile(case.name, case.argv, ctx.python, case.cwd, envs[case.name], profile_runs)
        for case in cases[1:]
        # the cold case's import profile would be the warm one's: its `before` is not run
        if case.name.startswith("outloop") and case.name != STATUS_COLD
    )
    before_rows = [
        [f"`{fig.name}`", BEFORE[fig.name], f"{f'{fig.measured.median:.1f}'} ms ({fig.ratio:.1f}×)"]
        for fig in figures
        if fig.name in BEFORE
    ]
    ratio = {fig.name: fig.ratio for fig in figures}
    made, making, whole = dataclass_cost(
        ("validate",), ctx.python, small, small_env, 1 if ctx.quick else 5
    )
    limits = (
        "\n**How `validate` and `status` start, and what is left.** Importing typer alone "
        f"takes {ratio[TYPER]:.1f}× `{FLOOR}` here (typer 0.29 imports inspect, ast, "
        "difflib, shutil with bz2/lzma, subprocess and its vendored click). Both verbs "
        "declare plain options (`cli/plain_options.py`), and `cli/plain_argv.py` reads their "
        "common command lines without importing typer; help, errors and anything it is not "
        "sure of still go to typer. What they cannot start without, outloop's own code "
        f"aside: `import {STATUS_IMPORTS}` is {ratio[STATUS_FLOOR]:.1f}× (the records are "
        "frozen dataclasses; run.json is JSON; git runs through subprocess), and "
        f"`import {VALIDATE_IMPORTS}` is {ratio[VALIDATE_FLOOR]:.1f}×. Both floors pay "
        "for the inspect module (with ast, dis and tokenize) that dataclasses imports, up to "
        "Python 3.11 only to write a docstring for a class without one; every outloop dataclass has its "
        "own, and the plain verbs load inspect on first use (`cli/deferred_modules.py`), "
        "so their own start does not pay for it. On top of them, `status` runs one git and "
        f"looks at {run_count} runs: with the listing cache an earlier `status` left "
        "(`store/listing_cache.py`: each finished run's summary, kept while its run.json "
        f"is the very file it was made from), one cache file read and {run_count} `stat`s, "
        "and neither the records' module nor the lock probe imported; without it "
        f"(`{STATUS_COLD}`), {run_count} run.json files read and parsed, a record built "
        "from each, and the cache written. "
        "`validate` runs one git too (finding the repository; it reads the commit only "
        "for a loop that names a file in it) and imports the cron parser only for a loop "
        "with a schedule; of PyYAML's import, about 6 ms is one regular expression its "
        f"pure-Python reader compiles (`yaml/reader.py`, measured at df63c94). `validate` makes {made} "
        f"frozen dataclasses on its way (the loop schema's nodes and the config model): "
        f"{making:.1f} ms of its {whole:.1f} ms in-process, because Python 3.11 compiles "
        "each generated method with its own `exec`. Together with its floor that leaves "
        "`validate` above 5× whatever else is trimmed, short of giving up dataclasses for "
        "the validated config. `--help` is answered from `cli/verbs.py` alone "
        "(`cli/root_help.py`). On its way out Python would walk every object the imports "
        "made once more, collecting cycles (about 6 ms after these verbs' imports, measured "
        "at 2c7bd26); the entry point freezes what is alive first (`gc.freeze()`, atexit "
        "handlers still run), so the exit skips that walk.\n"
    )
    details = (
        "Before and after the start-up work (before: commit faae4e2, measured with this "
        "section; after: this run):\n\n"
        + markdown_table(["command", "before", "after"], before_rows)
        + limits
        + "\n## Where the time goes (after)\n\n"
        + profiles
    )
    how = (
        f"Each command is started as a real process ({repeat} runs each after {warmup} "
        "warm-up runs, shuffled anew every round, stdout and stderr discarded), with "
        "user state (HOME, XDG dirs, git config) in a scratch directory and no `PYTHON*` "
        "variables (so modules load from their bytecode caches, as an installed copy "
        "does); the floor is "
        f"`{FLOOR}` with the console script's own interpreter, in the same rounds. "
        f"`status` runs in a repository holding {run_count} runs made once by real "
        "`outloop run` invocations of two loops (one meets its goal on the second turn, "
        "one stops at max_iterations) and cached."
    )
    return Section(title="CLI start-up", how=how, figures=tuple(figures), details=details)


def _print(section: Section) -> None:
    rows = [
        [
            f"`{fig.name}`",
            f"{fig.measured.median:.1f}",
            f"{fig.floor.median:.1f}",
            f"{fig.ratio:.2f}×",
            "-" if fig.target_ratio is None else f"≤ {fig.target_ratio:g}×",
            {True: "met", False: "MISSED", None: "-"}[fig.met],
        ]
        for fig in section.figures
    ]
    print(markdown_table(["command", "ms", "floor ms", "ratio", "target", ""], rows))
    print(section.details)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs and few repeats")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outloop", help="the outloop console script to time")
    parser.add_argument("--cache", type=Path, help="where the 100-run repository is kept")
    args = parser.parse_args(argv)
    outloop = find_outloop(args.outloop)
    with tempfile.TemporaryDirectory(prefix="outloop-bench-startup-") as tmp:
        cache = args.cache or Path(tmp) / "cache"
        ctx = BenchContext(
            outloop=outloop,
            python=interpreter_of(outloop),
            work=Path(tmp) / "work",
            cache=cache,
            quick=args.quick,
            seed=args.seed,
        )
        ctx.work.mkdir(parents=True)
        _print(collect(ctx))
    return 0


if __name__ == "__main__":
    sys.exit(main())
