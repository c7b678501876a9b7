"""What the default sandbox costs: per process, and per iteration of a real run.

Two measurements, each sandboxed and not, side by side:

- per process: `true` and `python -c pass` started bare, and started the way a
  run starts its agent and goal: inside the bubblewrap view
  `outloop_cli.sandbox.bwrap.wrap` builds (own user, PID, IPC, UTS and network
  namespaces, the allow-listed mounts, read-only `/proc/sys`), joined to a fresh
  session keyring first (`process/session_keyring.py`);
- per iteration: the real `outloop run` of a loop whose agent writes one file
  and whose goal never holds, with `sandbox: none` and with the default
  `sandbox: auto`, for 1 and 1+K iterations; (T(1+K) − T(1)) / K of one round
  is one iteration (two sandboxed processes: the agent's turn and the goal).

Every case runs in a shuffled order per round. The figures say what the
sandbox costs; they have no target (nothing here is to be made faster at the
price of the sandbox).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO_ROOT,
    BenchContext,
    Figure,
    Section,
    Stats,
    interleaved_order,
    isolated_env,
    timed_run,
)

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from outloop_cli.process.session_keyring import joiner
from outloop_cli.sandbox.bwrap import GitMounts, bwrap_program, wrap

LOOP = """\
agent:
  preset: command
  command: [{python}, -c, "import pathlib; pathlib.Path('note.txt').write_text('x')"]
  timeout: 60s
goal:
  run: "false"
limits:
  max_iterations: 50
  stall: 1000
sandbox: {sandbox}
"""

READING = (
    "A sandboxed process pays for bubblewrap's namespaces (user, PID, IPC, UTS, network: a "
    "new network namespace is the dearest), some thirty mounts (it rereads the mount table "
    "for each read-only one), a fresh `/proc`, and one `keyctl` call before `exec`. In a "
    "run, each sandboxed process costs outloop little more: "
    "bubblewrap's init comes to it to be collected once bubblewrap exits (its PID namespace "
    "dies with it, so no sweep of the machine's processes follows), and the line is built "
    "from what the run found once (`/etc` copied, the programs' install roots). Against a "
    "real agent's turn (seconds to minutes of model calls) and a real test suite, the added "
    "milliseconds per iteration do not show."
)


def _git(cwd: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _spawn(argv: Sequence[str], *, keyring: bool) -> float:
    started = time.perf_counter()
    subprocess.run(
        list(argv),
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        preexec_fn=joiner() if keyring else None,
    )
    return time.perf_counter() - started


def per_process(python: str, repeat: int, work: Path, seed: int) -> list[Figure]:
    repo = work / "proc-repo"
    repo.mkdir()
    env = isolated_env(work / "home-proc")
    _git(repo, env, "init", "-q")
    _git(repo, env, "commit", "-q", "--allow-empty", "-m", "x")
    worktree = work / "proc-wt"
    _git(repo, env, "worktree", "add", "-q", "-b", "bench", str(worktree))
    bwrap = bwrap_program(None)
    commands = {"true": ["true"], "python -c pass": [python, "-c", "pass"]}
    cases: dict[str, Callable[[], float]] = {}
    for name, argv in commands.items():
        boxed = wrap(argv, bwrap=bwrap, worktree=worktree, git=GitMounts((), repo / ".git"))
        cases[f"{name}|none"] = lambda argv=argv: _spawn(argv, keyring=False)  # type: ignore[misc]
        cases[f"{name}|bwrap"] = lambda boxed=boxed: _spawn(boxed, keyring=True)  # type: ignore[misc]
    samples: dict[str, list[float]] = {case: [] for case in cases}
    for case in [*cases] * 3:  # warm-up
        cases[case]()
    for case in interleaved_order(list(cases), repeat, seed):
        samples[case].append(cases[case]() * 1000)
    return [
        Figure(
            name=f"`{name}` in the run's sandbox",
            measured=Stats.of(samples[f"{name}|bwrap"]),
            floor_name=f"`{name}` bare",
            floor=Stats.of(samples[f"{name}|none"]),
            unit="ms",
            target_ratio=None,
            note="bubblewrap's view of a run and a fresh session keyring, per process start",
        )
        for name in commands
    ]


def per_iteration(
    outloop: Path, python: str, repeat: int, iterations: int, work: Path, seed: int
) -> Figure:
    env = isolated_env(work / "home-run")
    repos: dict[str, Path] = {}
    for sandbox in ("none", "auto"):
        repo = work / f"run-{sandbox}"
        (repo / ".outloop").mkdir(parents=True)
        (repo / ".outloop" / "bench.yml").write_text(LOOP.format(python=python, sandbox=sandbox))
        _git(repo, env, "init", "-q", "-b", "main")
        _git(repo, env, "add", "-A")
        _git(repo, env, "commit", "-q", "-m", "bench loop")
        repos[sandbox] = repo

    def run(sandbox: str, n: int) -> float:
        return timed_run(
            [str(outloop), "run", "bench", "--max-iterations", str(n), "--parallel"],
            cwd=repos[sandbox],
            env=env,
            ok_codes=(1,),
        )

    cases = [f"{s}|{n}" for s in ("none", "auto") for n in (1, 1 + iterations)]
    per_round: dict[str, list[float]] = {"none": [], "auto": []}
    order = interleaved_order(cases, repeat, seed)
    for start in range(0, len(order), len(cases)):
        times: dict[str, float] = {}
        for case in order[start : start + len(cases)]:
            sandbox, n = case.split("|")
            times[case] = run(sandbox, int(n))
        for sandbox in per_round:
            many, one = times[f"{sandbox}|{1 + iterations}"], times[f"{sandbox}|1"]
            per_round[sandbox].append((many - one) / iterations * 1000)
    return Figure(
        name="one iteration of `outloop run`, `sandbox: auto`",
        measured=Stats.of(per_round["auto"]),
        floor_name="the same with `sandbox: none`",
        floor=Stats.of(per_round["none"]),
        unit="ms",
        target_ratio=None,
        note=f"(T(1+{iterations}) − T(1)) / {iterations} per round: the agent's turn and the "
        "goal, both sandboxed",
    )


def collect(ctx: BenchContext) -> Section:
    repeat, run_repeat, iterations = (2, 1, 2) if ctx.quick else (20, 7, 5)
    process_figures = per_process(ctx.python, repeat, ctx.work, ctx.seed)
    iteration = per_iteration(ctx.outloop, ctx.python, run_repeat, iterations, ctx.work, ctx.seed)
    added = iteration.measured.median - iteration.floor.median
    how = (
        f"{repeat} shuffled rounds per process case after 3 warm-ups; {run_repeat} rounds of "
        f"the four `outloop run` cases (both sandbox settings, 1 and 1+{iterations} "
        "iterations). " + __doc__.split("\n\n", 1)[1].strip()
    )
    share = (
        f" ({iteration.ratio:.2f}× the unsandboxed iteration)" if iteration.floor.median > 0 else ""
    )
    details = f"One iteration costs **{added:.1f} ms more** in the sandbox{share}.\n\n{READING}"
    return Section(
        title="Sandbox cost",
        how=how,
        figures=(*process_figures, iteration),
        details=details,
    )
