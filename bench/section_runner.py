"""Section "Runner": outloop's own cost per iteration, against the same steps done by hand.

A loop whose agent writes one file per turn and whose goal never holds (so a
run lasts exactly ``--max-iterations``) runs, with the loop file's defaults
(the sandbox included: bubblewrap), as the real ``outloop run`` console
script, and as ``bench/raw_git_loop.sh``: the essential steps by hand (a
``git worktree add``, then per iteration the agent, ``git add --all``,
``git commit``, the goal), the agent and the goal under a minimal bubblewrap
line of the same kinds of isolation. So the ratio is outloop's own cost, not
the sandbox's; the sandbox's cost is a figure of its own (the same shell loop
with and without bubblewrap), for information.

The repositories are made as users make theirs (``bench/repos.py``): files
written by a script and committed, a history of ordinary commits, used
through a fresh ``git clone``; the loop file is committed on top.

    collect(ctx) -> Section       # for bench/run.py
"""

from __future__ import annotations

import collections
import json
import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchContext,
    Figure,
    Section,
    Stats,
    interleaved_order,
    isolated_env,
    markdown_table,
    ms,
    timed_run,
)
from repos import fresh_clone, git, realistic_repo

TARGET_RATIO = 1.2
SIZES = (1_000, 10_000, 100_000)
HISTORY = 200
# Interleaved rounds per size. The iterations per run are not fixed: they are
# calibrated per size from the fastest variant's warm-up run (see iterations_for), so
# that every variant still makes STEADY_SECONDS (at least MIN_STEADY turns) of turns
# after the warm-up, on a fast machine as on a slow one. A fixed count (130 at 1,000
# files) was too few here: the shell loop without bwrap turns in ~11 ms and had spent
# all but 7 of its turns inside the warm-up.
REPEAT = {1_000: 5, 10_000: 5, 100_000: 3}
# Only turns that start this long after a run's first one are measured. git compares the
# index's timestamp with each file's to the second (distribution builds leave USE_NSEC
# off): in the second after a checkout every entry is "racily clean", and every git
# command of every iteration reads the files again until the index is written in a
# later second. Measured at 1,000 files: the raw loop's `git add` takes 12 ms for about
# a second, then 3.6 ms. A loop that runs for hours pays that once; a 10-iteration run
# paid it on every turn, on both sides, and so measured the first second, not the loop.
WARMUP_SECONDS = 1.5
MIN_STEADY = 10
STEADY_SECONDS = 2.0
# how much faster a turn may get inside the warm-up than in the warm-up run: the shell
# loop halves at 1,000 files; at 10,000 files, with outloop's index split (505d7e4),
# one variant sped up so much more that a run measured 7 turns (2026-12-04), so 3
SPEEDUP = 3.0
# a bound on the calibration, should a warm-up turn be absurdly fast or slow
MAX_ITERATIONS = 2_000
QUICK_SIZE, QUICK_HISTORY, QUICK_ITERATIONS = 50, 5, 1
RAW_SCRIPT = Path(__file__).resolve().parent / "raw_git_loop.sh"
LOOP_NAME = "bench"
# in the worktree, ignored by the repository's .gitignore (*.log): never committed, and
# writable inside the sandbox without a `sandbox.write` entry (the loop keeps the defaults)
STAMPS = "bench-stamps.log"
# bash for $EPOCHREALTIME: a clock read without starting another process
AGENT_SCRIPT = f"echo $EPOCHREALTIME >> {STAMPS}; echo {{iteration}} > bench-touched.txt"
AGENT = ["/bin/bash", "-c", AGENT_SCRIPT]
GOAL = "false"
VARIANTS = ("outloop", "raw", "raw-bare")

# Every default kept, the sandbox first of all (no `sandbox:` key: bubblewrap where it
# works). The goal never holds (`false` costs what `true` costs) and the stall limit is
# out of reach, so a run lasts exactly --max-iterations.
LOOP_FILE = f"""\
description: runner cost benchmark (bench/section_runner.py)
agent:
  preset: command
  command: {json.dumps(AGENT)}
  prompt: Benchmark turn; the agent writes one file.
  timeout: 10m
goal:
  run: "{GOAL}"
  timeout: 10m
limits:
  max_iterations: 1000
  max_time: 2h
  stall: 100000
"""

# Measured while fixing issue 16 on the shared 2-core machine (load 4-6 from other work,
# so single numbers swing ±30%; the interleaved medians are the ones to compare).
BEFORE_AFTER = """\
Interleaved A/B, 4 rounds of 11 iterations each, the same fresh clones (ms per
iteration, median; outloop run at faae4e2 = before, at f5db8fd = after):

| files | before | after | raw loop (bwrap) | ratio before | ratio after |
|---|---|---|---|---|---|
| 1,000 | 353 | 242 | 91 | 3.9× | 2.7× |
| 10,000 | 450 | 231 | 113 | 4.0× | 2.0× |

The whole section at f5db8fd (4 rounds at 1k and 10k, 2 at 100k, load ~5): 192 vs
75 ms (2.55×) at 1k, 231 vs 128 ms (1.80×) at 10k, 522 vs 631 ms (0.83×) at 100k,
where two `git status` (495 ms) stand against the raw loop's `add --all` and
`commit` (507 ms) and the rest is noise.

What changed, each found in a profile (py-spy `--idle` of the runner, GIT_TRACE2_EVENT):

| cause (profile) | fix | effect |
|---|---|---|
| a scan of all of `/proc` after every child, git included (`_Orphanage._reap`: 15% of the runner's samples) | reap from our own children list (`/proc/self/task/*/children`); the verdict on daemons after an agent or goal still reads the full table | O(our children) instead of O(processes on the machine) per child |
| 4 `rev-parse HEAD` per iteration | the Worktree keeps its head and tree; a ref moved behind its back now fails `update-ref` | −4 processes |
| `diff --cached` after `write-tree` | the staged paths are exact when nothing was staged before; git asked otherwise | −1 process |
| import by `git fetch` (fetch + upload-pack + index-pack + rev-list: 27 ms at 10k, a new pack per iteration in the user's repo) | the run writes its objects into the user's store; the import is one `update-ref` (compare and swap) when outloop's git dir holds none of its own, `rev-list --missing` + `update-ref` when it does, a fetch on top of the agent's own commits | −3 processes, no pack per iteration |
| one bind per allowed `/etc` entry: bwrap rereads the mount table per read-only bind (the /etc binds were half of a sandboxed process's start) | the files copied once per run, bound as `/etc` with one mount | `sh -c false` in the run's view: 12.7 → 8.0 ms (quiet), 30.3 → 17.2 ms (loaded) |
| 6 `run.json` writes per iteration | none after the agent (the goal's phase saves a moment later), none for the commit phase (the commit's durable save follows) | 4 writes |

Per iteration at 10k files, git processes started by the runner: 12 before (plus
the fetch's 3 children), 7 after (status ×2, add, write-tree, commit-tree,
update-ref, update-ref of the import) against the raw loop's 2 (add, commit).
What is left between outloop and the floor: those 5 processes (3–5 ms each from
Python under load, more on a busy machine), the second `git status` (the check
that the goal left nothing behind; the raw loop does not check), a pump thread
and a supervised wait per process, and bubblewrap's view being larger than the
floor's (the /proc knobs, the agent's git dir).

**Where an iteration's time goes at 1k files (at c9eedcf, quiet machine).** py-spy
(`record --idle -r 1000`) of the runner's main thread over a 41-iteration run of this
loop on a 1,000-file repository: 49.5 ms per iteration (the raw loop with bwrap: 27.8 ms
in 4664f91's report), of which

| where | ms per iteration |
|---|---|
| 7 git processes (status ×2, add, write-tree, commit-tree, update-ref, the import's update-ref): waiting for git | 13.4 |
| the same: starting them (`vfork`+`exec`) and reading their output | 9.2 |
| the agent and the goal in bubblewrap, started and awaited | 12.0 |
| run.json saves (3; the commit's durable), audit appends (5) | 6.8 |
| building the two sandbox command lines | 3.6 |
| the git config and hook guard (after the agent, after the goal) | 1.2 |
| the rest (prompt, environment, masking, progress) | 3.3 |

The raw loop starts 2 git processes; the runner's other 5 are what its guarantees cost:
the changes are listed and scanned for secrets before anything is staged (`status` first),
the goal's verdict is in the commit (`commit-tree` after the goal, from the tree
`write-tree` wrote before it), the user's branch follows every iteration (the import's
`update-ref`), and nothing the goal left behind reaches the next turn (the second
`status`). At about 3 ms a git process from Python here, those alone are 1.5x the whole
floor's margin to 1.2x; at 100k files the second `status` is what grows (one `lstat` of
every tracked file, 0.1 s), and the floor has no such check.

**The first second, and after it (at 84dc481, quiet machine, 1,000 files).** The runs
above were 11 iterations long, so every measured turn fell in the second after the
worktree's checkout, when git's index holds "racily clean" entries (file and index
timestamps in the same second: see the warm-up rule) and every git command reads the
files again. GIT_TRACE2_EVENT of one outloop run, each command's own time, in that
second and after it: `status` 6.8 → 2.3 ms (twice), `add` 5.2 → 1.5, `write-tree`
5.0 → 1.2; `commit-tree` 0.7 and the two `update-ref` 1.1 and 0.7 do not read the
index and do not change. The raw loop, timed step by step from its shell: `git add`
12 → 3.6 ms, `git commit` 10.8 → 4.9, the agent's and the goal's bwrap 3.9 and 3.2
throughout; its turn went from 30 to 15 ms after about 11 turns. In that second both
sides did the same slow reads, which hid most of outloop's fixed cost: 44.8 against
31.0 ms read as 1.45×. After it, outloop's git commands take 9.7 ms of their own
against the raw loop's two, about 7 ms, and what stays is outloop's fixed cost per
iteration: 5 more processes to start and read (about 1 ms each from Python through the
process seam, 0.84 ms with bare `subprocess.run`, 0.67 ms with `os.posix_spawn`), a
larger sandbox view to build and mount for the agent and the goal, the guards, the
records. Steady, that is about twice a floor that is itself half as long, and it is the
figure the table now gives.

**Where an iteration's time goes at 1k files now (at e87dabb, quiet machine).** py-spy
(`record --idle -r 1000`) of the runner's main thread over a 300-iteration run: 50.5 ms
an iteration (the raw loop: 27.7 ms in the same minutes), of which

| step | ms per iteration | what it is |
|---|---|---|
| the agent's turn | 11.3 | its bubblewrap started (1.3) and awaited (7.9), the prompt, the turn's record |
| the goal | 9.6 | its bubblewrap started (1.1) and awaited (6.8), its line built (0.6), the record |
| the commit | 9.2 | `commit-tree` (3.1), the import's `update-ref` (2.8), the audit's `committed` and `imported` (1.0), the branch moved by hand (0.7), the agent's index copy (0.7) |
| the snapshot | 7.7 | `git add` of the changed paths and `write-tree` |
| the changes | 6.3 | `git status` before staging: the paths the secret and protected-path guards read |
| the restore | 5.4 | `git status` after the goal: nothing it left reaches the next turn |

Since 4b3636b the import's `update-ref` (in the user's repository) runs on a thread of its
own while the restore's `status` (in the run's worktree) runs: interleaved A/B, 5 rounds
of 200 iterations, 52.2 → 50.5 ms median, pairwise median −5.3 ms on a noisy machine.
Each git process costs this runner 4.2 ms on average from its start to its output read
(0.6 ms of that starting it); four of the six are what the guarantees above cost, and
the two sandboxes' extra mounts (the `/proc` knobs read-only, `/dev/null` over the key
and timer files, `--disable-userns`) about 1.6 ms each. Those alone are about 20 ms
against the 5.5 ms the 1.2× target leaves above a 27.7 ms floor.
"""


# -- the repositories ---------------------------------------------------------


def prepare_clone(pristine: Path, dest: Path, env: Mapping[str, str]) -> Path:
    """A fresh clone of ``pristine`` with the benchmark's loop file committed, as a user adds one."""
    if dest.exists():
        shutil.rmtree(dest)
    fresh_clone(pristine, dest, env)
    loop = dest / ".outloop" / f"{LOOP_NAME}.yml"
    loop.parent.mkdir(parents=True, exist_ok=True)
    loop.write_text(LOOP_FILE)
    git(dest, env, "add", "--", str(loop.relative_to(dest)))
    git(dest, env, "commit", "--quiet", "--message", "Add the benchmark loop")
    # a first status settles the index's stat cache, as in any checkout a user works in
    git(dest, env, "status", "--porcelain")
    return dest


def clean_repo(repo: Path, env: Mapping[str, str]) -> None:
    """Remove every worktree, branch and run record a measured run left (outside the timing)."""
    runs = repo / ".git" / "outloop" / "runs"
    for record in runs.glob("*/run.json"):
        worktree = json.loads(record.read_text()).get("worktree")
        if worktree and Path(worktree).is_dir():
            shutil.rmtree(worktree)
    shutil.rmtree(repo / ".git" / "outloop", ignore_errors=True)
    for line in git(repo, env, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
            if path != repo and path.exists():
                shutil.rmtree(path)
    git(repo, env, "worktree", "prune")
    refs = git(
        repo, env, "for-each-ref", "--format=%(refname)", "refs/heads/outloop/", "refs/heads/raw/"
    ).split()
    if refs:
        git(
            repo,
            env,
            "update-ref",
            "--stdin",
            stdin="".join(f"delete {r}\n" for r in refs).encode(),
        )


# -- one run --------------------------------------------------------------------


@dataclass(frozen=True)
class RunTiming:
    wall: float
    # epoch seconds at which each agent turn started
    stamps: tuple[float, ...]
    # turns that start within this many seconds of the first are not measured
    warmup: float = WARMUP_SECONDS

    @property
    def steady(self) -> tuple[int, int]:
        """Indices of the first and the last measured turn (the last turn of the run)."""
        since = self.stamps[0] + self.warmup
        first = next((i for i, t in enumerate(self.stamps) if t >= since), len(self.stamps) - 1)
        return first, len(self.stamps) - 1

    @property
    def measured(self) -> int:
        """Iterations measured: from the start of the first measured turn to the last's."""
        first, last = self.steady
        return last - first

    @property
    def per_iteration(self) -> float:
        first, last = self.steady
        if last == first:
            raise SystemExit(
                f"error: no turn started {self.warmup:g} s after the first; run more iterations"
            )
        return (self.stamps[last] - self.stamps[first]) / (last - first)


def iterations_for(warm_turn: float, warmup: float = WARMUP_SECONDS) -> int:
    """Iterations a run needs so that MIN_STEADY turns, and STEADY_SECONDS of them, fall
    past the warm-up, for a variant whose turn took ``warm_turn`` seconds in its warm-up run.

    The warm-up run's turn lies in the racily-clean second, the slowest a turn gets. The
    turns may get up to SPEEDUP times faster inside the warm-up already (the shell loop's
    halve at 1,000 files), so the real run spends at most ``warmup * SPEEDUP /
    warm_turn`` turns there; everything past that is measured.
    """
    turn = max(warm_turn, 1e-4)
    inside = math.ceil(warmup * SPEEDUP / turn)
    steady = max(MIN_STEADY, math.ceil(STEADY_SECONDS / turn))
    return min(inside + steady + 1, MAX_ITERATIONS)


def turn_seconds(timing: RunTiming) -> float:
    """Mean time between a run's turns, every turn counted (a warm-up run's figure)."""
    if len(timing.stamps) < 2:
        raise SystemExit("error: a calibration run needs at least two turns")
    return (timing.stamps[-1] - timing.stamps[0]) / (len(timing.stamps) - 1)


@dataclass(frozen=True)
class Runner:
    outloop: Path
    work: Path
    env: dict[str, str]
    warmup: float = WARMUP_SECONDS

    def run(
        self,
        variant: str,
        repo: Path,
        iterations: int,
        tag: str,
        extra_env: Mapping[str, str] | None = None,
    ) -> RunTiming:
        env = {**self.env, **(extra_env or {})}
        if variant == "outloop":
            argv = [str(self.outloop), "run", LOOP_NAME, "--max-iterations", str(iterations)]
            # exit 1: stopped at max_iterations without meeting the goal, as designed
            wall = timed_run(argv, cwd=repo, env=env, ok_codes=(1,))
            worktree = _outloop_worktree(repo)
        else:
            worktree = self.work / "raw-worktrees" / tag
            sandbox = "bwrap" if variant == "raw" else "none"
            argv = ["/bin/bash", str(RAW_SCRIPT), str(repo), str(worktree), f"raw/{tag}"]
            wall = timed_run([*argv, str(iterations), sandbox], cwd=repo, env=env)
        check_commits(repo, self.env, variant, iterations)
        turns = tuple(float(line) for line in (worktree / STAMPS).read_text().split())
        if len(turns) != iterations:
            raise SystemExit(f"error: {variant} ran the agent {len(turns)} times, not {iterations}")
        return RunTiming(wall=wall, stamps=turns, warmup=self.warmup)


def _outloop_worktree(repo: Path) -> Path:
    records = list((repo / ".git" / "outloop" / "runs").glob("*/run.json"))
    if len(records) != 1:
        raise SystemExit(f"error: expected one run record in {repo}, found {len(records)}")
    return Path(json.loads(records[0].read_text())["worktree"])


def check_commits(repo: Path, env: Mapping[str, str], variant: str, iterations: int) -> None:
    """Every variant must have done the same work: one commit per iteration on one new branch."""
    prefix = "refs/heads/outloop/" if variant == "outloop" else "refs/heads/raw/"
    refs = git(repo, env, "for-each-ref", "--format=%(refname)", prefix).split()
    if len(refs) != 1:
        raise SystemExit(f"error: expected one {prefix}* branch after a run, found {refs}")
    count = int(git(repo, env, "rev-list", "--count", f"HEAD..{refs[0]}").strip())
    if count != iterations:
        raise SystemExit(f"error: {variant} made {count} commits, expected {iterations}")


# -- where the time goes ----------------------------------------------------------


def _subcommand(argv: Sequence[str]) -> str:
    """``git --git-dir=x -c a=b status --porcelain`` → ``status``."""
    words = list(argv[1:])
    while words and words[0].startswith("-"):
        flag = words.pop(0)
        if flag in ("-C", "-c") and words:
            words.pop(0)
    return words[0] if words else "?"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def git_time_by_command(trace: Path, start: float, end: float) -> dict[str, tuple[int, float]]:
    """Calls and seconds per git subcommand started in [start, end), from GIT_TRACE2_EVENT.

    Only processes the runner started count: a git that git started
    (``upload-pack`` under ``fetch``) is inside its parent's time.
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


def breakdown(runner: Runner, repo: Path, iterations: int) -> str:
    """Per-iteration git time by subcommand for outloop and the raw loop, one traced run each."""
    per_variant: dict[str, dict[str, tuple[float, float]]] = {}
    totals: dict[str, float] = {}
    for variant in ("outloop", "raw"):
        trace = runner.work / f"trace-{variant}.json"
        trace.unlink(missing_ok=True)
        timing = runner.run(
            variant, repo, iterations, "trace", extra_env={"GIT_TRACE2_EVENT": str(trace)}
        )
        clean_repo(repo, runner.env)
        first, last = timing.steady
        k = timing.measured
        counts = git_time_by_command(trace, timing.stamps[first], timing.stamps[last])
        per_variant[variant] = {
            name: (calls / k, seconds / k) for name, (calls, seconds) in counts.items()
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
            "outside git (outloop itself or the shell; the sandboxed agent and goal)",
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


# -- the section --------------------------------------------------------------------


def _label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _stats_ms(samples: Sequence[float]) -> Stats:
    return Stats.of([s * 1000 for s in samples])


def collect(ctx: BenchContext) -> Section:
    sizes = (QUICK_SIZE,) if ctx.quick else SIZES
    history = QUICK_HISTORY if ctx.quick else HISTORY
    env = isolated_env(ctx.work / "home")
    # quick mode checks that everything runs, on runs too short to have a steady state
    runner = Runner(
        outloop=ctx.outloop, work=ctx.work, env=env, warmup=0.0 if ctx.quick else WARMUP_SECONDS
    )
    figures: list[Figure] = []
    sandbox_figures: list[Figure] = []
    whole_rows: list[list[str]] = []
    breakdown_table = ""
    iterations: dict[int, int] = {}
    started = time.perf_counter()
    for n in sizes:
        pristine = realistic_repo(ctx.cache, n, env, history=history)
        repo = prepare_clone(pristine, ctx.work / f"clone-{n}", env)
        repeat = 1 if ctx.quick else REPEAT.get(n, 3)
        # one unmeasured run of each variant warms the page cache and git's object store,
        # and times a turn; the fastest variant's turn sets the iterations of every run,
        # so that all variants run the same loop and its whole-run walls compare
        warm_turns: list[float] = []
        for variant in VARIANTS:
            warm_turns.append(turn_seconds(runner.run(variant, repo, 3, "warmup")))
            clean_repo(repo, env)
        k = QUICK_ITERATIONS if ctx.quick else iterations_for(min(warm_turns)) - 1
        iterations[n] = 1 + k
        runs: dict[str, list[RunTiming]] = {v: [] for v in VARIANTS}
        for i, variant in enumerate(interleaved_order(VARIANTS, repeat, ctx.seed + n)):
            runs[variant].append(runner.run(variant, repo, 1 + k, f"r{i}"))
            clean_repo(repo, env)
        least = min(r.measured for v in VARIANTS for r in runs[v])
        if not ctx.quick and least < MIN_STEADY:
            raise SystemExit(
                f"error: at {n:,} files a run measured only {least} iterations past the "
                f"{WARMUP_SECONDS:g} s warm-up: its turns sped up more than the calibration allows "
                f"for; raise STEADY_SECONDS"
            )
        per = {v: _stats_ms([r.per_iteration for r in runs[v]]) for v in VARIANTS}
        figures.append(
            Figure(
                name=f"cost per iteration, {_label(n)} files",
                measured=per["outloop"],
                floor_name="bench/raw_git_loop.sh, agent and goal under bwrap",
                floor=per["raw"],
                unit="ms",
                target_ratio=TARGET_RATIO,
                note=f"`outloop run` with the default config (sandbox on), {1 + k} iterations "
                f"(at least {least} measured), fresh clone of {n:,} files + {history} commits",
            )
        )
        sandbox_figures.append(
            Figure(
                name=f"sandbox cost per iteration, {_label(n)} files (info)",
                measured=per["raw"],
                floor_name="bench/raw_git_loop.sh without bwrap",
                floor=per["raw-bare"],
                unit="ms",
                target_ratio=None,
                note="the agent and the goal under a minimal bwrap line, against bare",
            )
        )
        walls = {v: Stats.of([r.wall for r in runs[v]]) for v in VARIANTS}
        whole_rows.append(
            [
                f"{n:,}",
                f"{1 + k}",
                f"{walls['outloop'].median:.2f}",
                f"{walls['raw'].median:.2f}",
                f"{walls['raw-bare'].median:.2f}",
            ]
        )
        if n == max(sizes):
            breakdown_table = breakdown(runner, repo, 1 + k)
        shutil.rmtree(repo)
    how = f"""\
A loop whose agent is `{" ".join(AGENT[:2])} '{AGENT_SCRIPT}'` (it changes one file per
turn and notes when its turn started, in a file the repository ignores) and whose goal
is `{GOAL}` (never met, so every run lasts exactly its `--max-iterations`) runs
three ways, interleaved in a shuffled order, per repository size
({", ".join(f"{iterations[s]} iterations at {s:,} files" for s in sizes)}; the count is
calibrated on this machine from the fastest variant's warm-up run, so that every variant
makes at least {MIN_STEADY} turns and {STEADY_SECONDS:g} s past its warm-up):

- `outloop run {LOOP_NAME} --max-iterations N`: the installed console script,
  the loop file's **defaults kept, the sandbox included** (bubblewrap);
- `bench/raw_git_loop.sh` (the floor): the essential steps by hand, `git worktree
  add -b`, the baseline goal, then per iteration the same agent command, `git add
  --all`, `git commit --allow-empty`, the goal; **the agent and the goal each under a
  minimal bwrap line** with the same kinds of isolation as outloop's sandbox (own user
  namespace without capabilities, PID, network, IPC and UTS namespaces, new session,
  the system read-only, fresh `/proc`, `/dev`, `/tmp`, the worktree and git dir
  writable). Both sides pay for a sandbox, so the ratio is outloop's own cost; what
  the sandbox costs is its own figure below, for information (the same shell loop
  with and without bwrap);
- the same shell loop without bwrap (for the sandbox figure only).

Cost per iteration = (start of the agent's last turn − start of the first measured
turn) / the iterations between them: everything between two turns (status, snapshot,
guards, goal, commit, import into the user's repository, run records) plus one turn of
the agent. **Measured turns start {runner.warmup:g} s after a run's first turn**: git
compares the index's timestamp with each file's to the second, so in the second after
a checkout every entry is "racily clean" and every git command of every iteration reads
the files again, until the index is written in a later second. That second is paid once
per run, by both sides; a loop that runs for hours lives in what follows it. (Before
this rule the runs were 11 iterations long and so measured that first second: the raw
loop at 1,000 files took 30 ms a turn there and 15 ms after it.) Repositories
(`bench/repos.py`): {", ".join(f"{s:,}" for s in sizes)} files written by a script and
committed, then {history} ordinary commits (a few files each), served through a fresh
`git clone --no-local` with the loop file committed on top; cached in the bench cache,
cloned anew for each size. Each run is checked to have made exactly one commit per
iteration on a new branch; worktrees, branches and run records are removed after each
run, outside the timing. {"Quick mode: one round." if ctx.quick else ""}
Repeats: {", ".join(f"{REPEAT.get(s, 3) if not ctx.quick else 1} at {s:,}" for s in sizes)}
(after one unmeasured warm-up run of each variant).
"""
    details = f"""\
### Whole runs (seconds, median wall clock, start-up and worktree included)

{markdown_table(["files", "iterations", "outloop run", "raw loop (bwrap)", "raw loop (bare)"], whole_rows)}
### Where an iteration's time goes ({max(sizes):,} files, one traced run each, `GIT_TRACE2_EVENT`)

{breakdown_table}
### Before and after the fixes of issue 16

{BEFORE_AFTER}
Measured in {time.perf_counter() - started:.0f} s.
"""
    return Section(
        title="Runner: cost per iteration",
        how=how,
        figures=(*figures, *sandbox_figures),
        details=details,
    )


def main() -> int:
    """``python bench/section_runner.py [--quick]``: the section as markdown on stdout."""
    import argparse
    import tempfile

    from _common import find_outloop, interpreter_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/outloop-bench-cache"))
    parser.add_argument("--outloop")
    args = parser.parse_args()
    outloop = find_outloop(args.outloop)
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        section = collect(
            BenchContext(
                outloop=outloop,
                python=interpreter_of(outloop),
                work=Path(tmp),
                cache=args.cache,
                quick=args.quick,
                seed=1,
            )
        )
    print(f"## {section.title}\n\n{section.how}")
    rows = [
        [
            f.name,
            f"{f.measured.median:.1f} ({f.measured.q1:.1f}–{f.measured.q3:.1f})",
            f"{f.floor.median:.1f} ({f.floor.q1:.1f}–{f.floor.q3:.1f})",
            f"{f.ratio:.2f}×",
            "–"
            if f.target_ratio is None
            else f"≤ {f.target_ratio:g}× {'met' if f.met else 'missed'}",
        ]
        for f in section.figures
    ]
    print(markdown_table(["figure", "measured ms", "floor ms", "ratio", "target"], rows))
    print(section.details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
