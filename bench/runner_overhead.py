"""The runner's own cost per iteration, against the same steps done with plain git.

A loop whose agent writes one file and whose goal never holds (so the run
lasts exactly ``--max-iterations``) is run by the real ``outloop run`` and by
``bench/raw_git_loop.sh`` on repositories of 1k, 10k (and with ``--large``
100k) files, 1+K iterations each. The agent notes the time each of its turns
starts; the time from turn 1 to turn 1+K over K is the cost of one iteration,
measured from outside and the same way for both. Whatever else a run takes
(start-up, the worktree, the baseline check, reports) is its fixed cost.
Target: outloop's per-iteration cost at most 1.5x the raw git script's.

    .venv/bin/python bench/runner_overhead.py                 # 1k and 10k files
    .venv/bin/python bench/runner_overhead.py --large         # and 100k
    .venv/bin/python bench/runner_overhead.py --large --breakdown --profile \\
        --write docs/bench-runner.md

The repositories are built once with ``git fast-import`` and cached (see
``--cache-dir``); the benchmark removes every worktree, branch and run record
it made after each run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_IDENTITY,
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

TARGET_RATIO = 1.5
DEFAULT_SIZES = (1_000, 10_000)
LARGE_SIZE = 100_000
RAW_SCRIPT = Path(__file__).resolve().parent / "raw_git_loop.sh"
# bump when the generated repositories change, so cached ones are rebuilt
REPO_FORMAT = "3"
LOOP_NAME = "bench"
FILES_PER_DIR = 100
STAMPS_VAR = "BENCH_STAMPS"
# bash for $EPOCHREALTIME: a clock read without starting another process
AGENT_SCRIPT = f'echo $EPOCHREALTIME >> "${STAMPS_VAR}"; echo {{iteration}} > bench-touched.txt'
AGENT = ["/bin/bash", "-c", AGENT_SCRIPT]
GOAL = "false"

# The goal never holds (a goal that holds ends the run at the baseline check;
# `false` costs what `true` costs), and the stall limit is out of reach, so a
# run always lasts exactly --max-iterations iterations.
LOOP_FILE = f"""\
description: runner overhead benchmark (bench/runner_overhead.py)
agent:
  preset: command
  command: {json.dumps(AGENT)}
  prompt: Benchmark turn; the agent writes one file.
  pass_env: [{STAMPS_VAR}]
  timeout: 10m
goal:
  run: "{GOAL}"
  timeout: 10m
limits:
  max_iterations: 1000
  max_time: 2h
  stall: 100000
# outloop's own cost against the same steps in a shell script, which runs nothing in a
# sandbox either (and the agent's stamps file lies outside the worktree); what the
# default sandbox adds is bench/sandbox_overhead.py's question
sandbox: none
"""


# -- the repositories ---------------------------------------------------------


def file_path(i: int) -> str:
    """Paths spread over nested directories of FILES_PER_DIR files, like a real source tree."""
    return f"src/d{i // (FILES_PER_DIR * 10):04d}/d{(i // FILES_PER_DIR) % 10}/f{i:06d}.txt"


def fast_import_stream(n_files: int) -> Iterator[bytes]:
    """One commit holding ``n_files`` small distinct files plus the loop file."""
    message = b"benchmark repository\n"
    yield (
        b"commit refs/heads/main\n"
        b"committer Bench User <bench@example.invalid> 1700000000 +0000\n"
        b"data %d\n%s" % (len(message), message)
    )
    chunk: list[bytes] = []
    for i in range(n_files):
        content = f"file {i}\nsome text so that every blob is a different object\n".encode()
        chunk.append(
            b"M 100644 inline %s\ndata %d\n%s\n" % (file_path(i).encode(), len(content), content)
        )
        if len(chunk) == 1000:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)
    loop = LOOP_FILE.encode()
    yield b"M 100644 inline .outloop/%s.yml\ndata %d\n%s\n\n" % (
        LOOP_NAME.encode(),
        len(loop),
        loop,
    )


def _git(repo: Path, env: dict[str, str], *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, input=stdin, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"error: git {' '.join(args)} in {repo}: {done.stderr.decode()}")
    return done.stdout.decode()


def ensure_repo(cache: Path, n_files: int, env: dict[str, str]) -> Path:
    """A repository with ``n_files`` checked-out files, built once and reused."""
    repo = cache / f"repo-{n_files}"
    marker = repo / ".git" / "outloop-bench-format"
    if marker.is_file() and marker.read_text() == REPO_FORMAT:
        return repo
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    started = time.perf_counter()
    _git(repo, env, "init", "--quiet", "--initial-branch=main")
    # automatic gc would strike at random moments of random runs
    _git(repo, env, "config", "gc.auto", "0")
    process = subprocess.Popen(
        ["git", "fast-import", "--quiet"], cwd=repo, env=env, stdin=subprocess.PIPE
    )
    stdin = process.stdin
    assert stdin is not None
    for block in fast_import_stream(n_files):
        stdin.write(block)
    stdin.close()
    if process.wait() != 0:
        raise SystemExit(f"error: git fast-import failed in {repo}")
    _git(repo, env, "reset", "--quiet", "--hard", "main")
    # a first status settles the index's stat cache, as in any checkout a user works in
    _git(repo, env, "status", "--porcelain")
    marker.write_text(REPO_FORMAT)
    print(
        f"built {repo} ({n_files} files) in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    return repo


def clean_repo(repo: Path, env: dict[str, str]) -> None:
    """Remove every worktree, branch and run record a measured run left."""
    listing = _git(repo, env, "worktree", "list", "--porcelain")
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
            if path != repo and path.exists():
                shutil.rmtree(path)
    _git(repo, env, "worktree", "prune")
    refs = _git(
        repo, env, "for-each-ref", "--format=%(refname)", "refs/heads/outloop/", "refs/heads/raw/"
    ).split()
    if refs:
        _git(
            repo,
            env,
            "update-ref",
            "--stdin",
            stdin="".join(f"delete {r}\n" for r in refs).encode(),
        )
    shutil.rmtree(repo / ".git" / "outloop", ignore_errors=True)
    _git(repo, env, "prune", "--expire=now")


# -- running one variant ------------------------------------------------------


@dataclass(frozen=True)
class RunTiming:
    wall: float
    # epoch seconds at which each agent turn started
    stamps: tuple[float, ...]

    @property
    def per_iteration(self) -> float:
        return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)

    @property
    def fixed(self) -> float:
        return self.wall - len(self.stamps) * self.per_iteration


@dataclass(frozen=True)
class Runner:
    outloop: Path
    python: str
    state: Path
    env: dict[str, str]

    def outloop_argv(self, iterations: int) -> list[str]:
        return [str(self.outloop), "run", LOOP_NAME, "--max-iterations", str(iterations)]

    def raw_argv(self, repo: Path, iterations: int, tag: str) -> list[str]:
        worktree = self.state / "raw-worktrees" / tag
        return ["/bin/sh", str(RAW_SCRIPT), str(repo), str(worktree), f"raw/{tag}", str(iterations)]

    def run(
        self,
        variant: str,
        repo: Path,
        iterations: int,
        tag: str,
        extra_env: dict[str, str] | None = None,
    ) -> RunTiming:
        stamps = self.state / f"stamps-{tag}"
        stamps.unlink(missing_ok=True)
        env = {**self.env, STAMPS_VAR: str(stamps), **(extra_env or {})}
        if variant == "outloop":
            # exit 1: stopped at max_iterations without meeting the goal, as designed
            wall = timed_run(self.outloop_argv(iterations), cwd=repo, env=env, ok_codes=(1,))
        else:
            wall = timed_run(self.raw_argv(repo, iterations, tag), cwd=repo, env=env)
        check_commits(repo, self.env, variant, iterations)
        turns = tuple(float(line) for line in stamps.read_text().split())
        if len(turns) != iterations:
            raise SystemExit(f"error: {variant} ran the agent {len(turns)} times, not {iterations}")
        return RunTiming(wall=wall, stamps=turns)


def check_commits(repo: Path, env: dict[str, str], variant: str, iterations: int) -> None:
    """Both variants must have done the same work: one commit per iteration on one new branch."""
    prefix = "refs/heads/outloop/" if variant == "outloop" else "refs/heads/raw/"
    refs = _git(repo, env, "for-each-ref", "--format=%(refname)", prefix).split()
    if len(refs) != 1:
        raise SystemExit(f"error: expected one {prefix}* branch after a run, found {refs}")
    count = int(_git(repo, env, "rev-list", "--count", f"HEAD..{refs[0]}").strip())
    if count != iterations:
        raise SystemExit(f"error: {variant} made {count} commits, expected {iterations}")


# -- measurements -------------------------------------------------------------


@dataclass
class SizeResult:
    files: int
    iterations: int
    runs: dict[str, list[RunTiming]] = field(default_factory=dict)

    def per_iteration(self, variant: str) -> Stats:
        return Stats.of([run.per_iteration for run in self.runs[variant]])

    def fixed(self, variant: str) -> Stats:
        return Stats.of([run.fixed for run in self.runs[variant]])

    def ratio(self) -> float:
        return self.per_iteration("outloop").median / self.per_iteration("raw").median


def measure_size(
    runner: Runner, repo: Path, files: int, iterations: int, repeat: int, seed: int
) -> SizeResult:
    result = SizeResult(files=files, iterations=iterations, runs={"outloop": [], "raw": []})
    # one unmeasured run of each variant warms the page cache and git's object store
    for variant in ("outloop", "raw"):
        runner.run(variant, repo, 2, "warmup")
        clean_repo(repo, runner.env)
    for n, variant in enumerate(interleaved_order(["outloop", "raw"], repeat, seed)):
        timing = runner.run(variant, repo, 1 + iterations, f"r{n}")
        result.runs[variant].append(timing)
        clean_repo(repo, runner.env)
        print(
            f"  {files} files, {variant}: {ms(timing.per_iteration)} ms per iteration, "
            f"{timing.wall:.2f}s in all",
            file=sys.stderr,
        )
    return result


def results_table(results: Sequence[SizeResult]) -> str:
    rows = []
    for r in results:
        out, raw = r.per_iteration("outloop"), r.per_iteration("raw")
        ratio = r.ratio()
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        rows.append(
            [
                f"{r.files:,}",
                f"{ms(out.median)} ({ms(out.q1)}–{ms(out.q3)})",
                f"{ms(raw.median)} ({ms(raw.q1)}–{ms(raw.q3)})",
                f"**{ratio:.2f}×** ({verdict} ≤ {TARGET_RATIO:g}×)",
                ms(r.fixed("outloop").median),
                ms(r.fixed("raw").median),
            ]
        )
    return markdown_table(
        [
            "files",
            "outloop ms / iteration (q1–q3)",
            "raw git ms / iteration (q1–q3)",
            "ratio",
            "outloop fixed ms / run",
            "raw git fixed ms / run",
        ],
        rows,
    )


# -- where the time goes ------------------------------------------------------


def _subcommand(argv: Sequence[str]) -> str:
    """``git -C x --literal-pathspecs status --porcelain`` → ``status``."""
    words = list(argv[1:])
    while words and words[0].startswith("-"):
        flag = words.pop(0)
        if flag in ("-C", "-c") and words:
            words.pop(0)
    return words[0] if words else "?"


def _epoch(iso: str) -> float:
    """trace2's ``2026-11-27T16:38:14.123456Z`` as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def git_time_by_command(trace: Path, start: float, end: float) -> dict[str, tuple[int, float]]:
    """Calls and seconds per git subcommand started in [start, end), from GIT_TRACE2_EVENT.

    Only processes started by the caller count: a git that git itself
    started (``maintenance`` after ``commit``) is inside its parent's time.
    """
    argv_of: dict[str, list[str]] = {}
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        sid = event.get("sid", "")
        if "/" in sid:
            continue
        if event["event"] == "start" and start <= _epoch(event["time"]) < end:
            argv_of[sid] = event["argv"]
        elif event["event"] == "exit" and sid in argv_of:
            entry = totals[_subcommand(argv_of[sid])]
            entry[0] += 1
            entry[1] += float(event["t_abs"])
    return {k: (int(v[0]), v[1]) for k, v in totals.items()}


def breakdown(runner: Runner, repo: Path, iterations: int, work: Path) -> str:
    """Per-iteration git time by subcommand for both variants, between agent turns 1 and 1+K."""
    per_variant: dict[str, dict[str, tuple[float, float]]] = {}
    totals: dict[str, float] = {}
    for variant in ("outloop", "raw"):
        trace = work / f"trace-{variant}.json"
        trace.unlink(missing_ok=True)
        timing = runner.run(
            variant, repo, 1 + iterations, "trace", extra_env={"GIT_TRACE2_EVENT": str(trace)}
        )
        clean_repo(repo, runner.env)
        counts = git_time_by_command(trace, timing.stamps[0], timing.stamps[-1])
        per_variant[variant] = {
            name: (calls / iterations, seconds / iterations)
            for name, (calls, seconds) in counts.items()
        }
        totals[variant] = timing.per_iteration
    names = sorted(
        {n for v in per_variant.values() for n in v},
        key=lambda n: -max(per_variant[v].get(n, (0, 0.0))[1] for v in per_variant),
    )
    rows = []
    for name in names:
        row = [f"`git {name}`"]
        for variant in ("outloop", "raw"):
            calls, seconds = per_variant[variant].get(name, (0.0, 0.0))
            row += [f"{calls:g}", ms(seconds)] if calls else ["–", "–"]
        rows.append(row)
    git_sum = {v: sum(s for _, s in per_variant[v].values()) for v in per_variant}
    rows.append(["all git", "", ms(git_sum["outloop"]), "", ms(git_sum["raw"])])
    rows.append(
        [
            "outside git (outloop itself / the shell; agent and goal processes)",
            "",
            ms(totals["outloop"] - git_sum["outloop"]),
            "",
            ms(totals["raw"] - git_sum["raw"]),
        ]
    )
    rows.append(["one iteration, wall clock", "", ms(totals["outloop"]), "", ms(totals["raw"])])
    return markdown_table(
        ["per iteration", "outloop calls", "outloop ms", "raw calls", "raw ms"], rows
    )


def profile(runner: Runner, repo: Path, iterations: int, work: Path) -> str:
    """outloop run under cProfile: the heaviest outloop functions by cumulative time."""
    output = work / "run.prof"
    stamps = work / "stamps-profile"
    argv = [runner.python, "-m", "cProfile", "-o", str(output), *runner.outloop_argv(iterations)]
    env = {**runner.env, STAMPS_VAR: str(stamps)}
    # cProfile swallows the script's SystemExit, so the exit code is 0 here
    timed_run(argv, cwd=repo, env=env, ok_codes=(0, 1))
    check_commits(repo, runner.env, "outloop", iterations)
    clean_repo(repo, runner.env)
    stats = pstats.Stats(str(output))
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]
    by_cumulative = sorted(entries.items(), key=lambda item: -item[1][3])
    for (filename, line, function), (_, calls, own, cumulative, _) in by_cumulative:
        if "outloop_cli" not in filename:
            continue
        module = filename.split("outloop_cli", 1)[1].lstrip("/")
        rows.append([f"`{module}:{line} {function}`", str(calls), ms(cumulative), ms(own)])
        if len(rows) == 30:
            break
    return markdown_table(["function", "calls", "cumulative ms", "own ms"], rows)


# -- report -------------------------------------------------------------------


def render_doc(
    *,
    table: str,
    iterations: int,
    repeat: int,
    machine: str,
    command: str,
    breakdown_table: str,
    breakdown_files: int,
    profile_table: str,
) -> str:
    sections = [
        f"""# Benchmark: the runner's own cost per iteration

Generated by `bench/runner_overhead.py` on {utc_now()}; see `bench/README.md`.

**Question:** what does outloop add to each iteration of a loop, over doing the same
steps by hand with git? Target: outloop's cost per iteration at most {TARGET_RATIO:g}× that of
plain git commands.

**Method:** a loop whose agent is `{" ".join(AGENT[:2])} '{AGENT_SCRIPT}'` (it changes one
file per turn and notes when its turn started) and whose goal is `{GOAL}` (a goal that holds
would end the run at the baseline check; `false` costs what `true` costs; the stall limit is
set out of reach) runs {1 + iterations} iterations

- with the real CLI: `outloop run {LOOP_NAME} --max-iterations {1 + iterations}` as a subprocess, and
- with `bench/raw_git_loop.sh`: `git worktree add -b`, the baseline goal, then per
  iteration the same agent command, `git add --all`, `git commit --allow-empty`, the goal.

The cost of one iteration is the time from the agent's first turn to its last, divided by
{iterations}: everything between two agent turns (commit, goal, checks, records) plus the turn
itself, measured from outside the runner and the same way for both. The fixed cost is the rest
of the run's wall-clock time (interpreter start-up, config, `git worktree add` of the whole
tree, baseline check, reports). Each variant runs {repeat} times, the two interleaved in a
shuffled order; tables give the median and the interquartile range over runs. The repositories
hold generated files (~{FILES_PER_DIR} per directory), built with `git fast-import`, checked out,
`gc.auto=0`. Every run is checked to have made exactly one commit per iteration on a new branch;
worktrees, branches and run records are removed after each run, outside the timing. User state
(HOME, XDG dirs, git config) is a temporary directory.

## Result

{table}""",
    ]
    if breakdown_table:
        sections.append(
            f"""## Where an iteration's time goes

One more run of each variant on {breakdown_files:,} files with `GIT_TRACE2_EVENT`: the git
processes started between the agent's first and last turn, by subcommand, per iteration
(calls, and the time each process ran):

{breakdown_table}"""
        )
    if profile_table:
        sections.append(
            f"""## Profile of `outloop run`

cProfile of one whole run of {1 + iterations} iterations on the largest repository
(start-up and the one-off worktree included), outloop's functions by cumulative time;
"own" is the time in the function itself, outside the functions it calls:

{profile_table}"""
        )
    sections.append(
        f"""## Machine

{machine}
## Reproduce

```sh
{command}
```
"""
    )
    return "\n".join(sections)


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "outloop-bench"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        help="comma-separated repository sizes in files (default 1000,10000)",
    )
    parser.add_argument("--large", action="store_true", help=f"also {LARGE_SIZE:,} files")
    parser.add_argument(
        "--iterations", type=int, default=10, help="K: extra iterations of the long run"
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds of all four runs")
    parser.add_argument("--seed", type=int, default=1, help="seed of the interleaving order")
    parser.add_argument("--outloop", help="the outloop console script to time")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache(),
        help="where the generated repositories are kept (default $XDG_CACHE_HOME/outloop-bench)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="per-iteration git time by subcommand (GIT_TRACE2_EVENT), largest size",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile outloop run on the largest size"
    )
    parser.add_argument("--write", type=Path, help="write the markdown report to this file")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(DEFAULT_SIZES)
    if args.large and LARGE_SIZE not in sizes:
        sizes.append(LARGE_SIZE)
    outloop = find_outloop(args.outloop)
    python = interpreter_of(outloop)
    cache: Path = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    results = []
    breakdown_table = profile_table = ""
    with tempfile.TemporaryDirectory(prefix="state-", dir=cache) as tmp:
        work = Path(tmp)
        env = isolated_env(work / "home")
        runner = Runner(outloop=outloop, python=python, state=work, env=env)
        setup_env = {**env, **BENCH_IDENTITY}
        repos = {n: ensure_repo(cache, n, setup_env) for n in sizes}
        for n in sizes:
            clean_repo(repos[n], env)
            print(f"measuring {n} files", file=sys.stderr)
            results.append(
                measure_size(runner, repos[n], n, args.iterations, args.repeat, args.seed)
            )
        largest = repos[max(sizes)]
        if args.breakdown:
            breakdown_table = breakdown(runner, largest, args.iterations, work)
        if args.profile:
            profile_table = profile(runner, largest, 1 + args.iterations, work)
    table = results_table(results)
    print(table)
    if breakdown_table:
        print(breakdown_table)
    if profile_table:
        print(profile_table)
    if args.write:
        command = reproduce_command(
            "bench/runner_overhead.py", sys.argv[1:] if argv is None else argv
        )
        args.write.write_text(
            render_doc(
                table=table,
                iterations=args.iterations,
                repeat=args.repeat,
                machine=machine_description(outloop, python, cache),
                command=command,
                breakdown_table=breakdown_table,
                breakdown_files=max(sizes),
                profile_table=profile_table,
            )
        )
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
