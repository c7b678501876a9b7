"""What the default sandbox costs: per process, and per iteration of a real run.

Two measurements, each sandboxed and not, side by side:

- per process: `true` and `python -c pass` started bare, and started the way a
  run starts its agent and goal: inside the bubblewrap view
  `outloop_cli.sandbox.bwrap.wrap` builds for a run's goal (own user, PID, IPC, UTS
  and network namespaces, the run's copy of `/etc`, the object store read-only,
  read-only `/proc/sys`), in a fresh session keyring joined on a starting thread
  (`process/session_keyring.py`), as a run starts it; then the same line without
  each of its protections in turn, to show what each one adds to a start;
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
    markdown_table,
    timed_run,
)

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from outloop_cli.process.session_keyring import popen_in_fresh_keyring
from outloop_cli.sandbox.bwrap import GitMounts, bwrap_program, etc_view, wrap

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
    """Start ``argv`` and wait for it, in a fresh session keyring the way a run starts a
    sandboxed child (``popen_in_fresh_keyring``: joined on a starting thread, then vfork)."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    started = time.perf_counter()
    proc = popen_in_fresh_keyring(start) if keyring else start()
    if proc.wait() != 0:
        raise SystemExit(f"error: {argv[-1]} in the sandbox exited {proc.returncode}")
    return time.perf_counter() - started


def run_view(argv: Sequence[str], repo: Path, worktree: Path, work: Path) -> list[str]:
    """``argv`` in the view a run gives its goal: the run's copy of ``/etc`` (made once,
    as a run makes it), the object store read-only, a git dir writable."""
    etc = work / "sandbox-etc"
    if not etc.is_dir():
        etc_view(etc)
    return wrap(
        argv,
        bwrap=bwrap_program(None),
        worktree=worktree,
        git=GitMounts((repo / ".git" / "objects",), repo / ".git"),
        etc=etc,
    )


def proc_repo(work: Path) -> tuple[Path, Path]:
    """A repository and a worktree of it, for the per-process cases."""
    repo = work / "proc-repo"
    worktree = work / "proc-wt"
    if repo.is_dir():
        return repo, worktree
    repo.mkdir()
    env = isolated_env(work / "home-proc")
    _git(repo, env, "init", "-q")
    _git(repo, env, "commit", "-q", "--allow-empty", "-m", "x")
    _git(repo, env, "worktree", "add", "-q", "-b", "bench", str(worktree))
    return repo, worktree


def _pairs(argv: Sequence[str], keep: Callable[[str, str], bool]) -> list[str]:
    """``argv`` without each ``--flag SRC DEST`` mount whose (flag, SRC) ``keep`` refuses."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--ro-bind", "--ro-bind-try", "--bind") and not keep(argv[i], argv[i + 1]):
            i += 3
            continue
        out.append(argv[i])
        i += 1
    return out


# what a run's sandbox line holds beyond the floor's minimal one, each a way to drop it
PROTECTIONS: dict[str, Callable[[list[str]], list[str]]] = {
    "`/proc/sys`, `sysrq-trigger`, `irq`, `bus`, `fs` read-only": lambda a: _pairs(
        a, lambda flag, src: not (flag == "--ro-bind-try" and src.startswith("/proc/"))
    ),
    "`/proc/keys`, `key-users`, `timer_list` hidden": lambda a: _pairs(
        a, lambda flag, src: src != "/dev/null"
    ),
    "no user namespace inside (`--disable-userns`)": lambda a: [
        x for x in a if x != "--disable-userns"
    ],
    "own IPC, UTS and cgroup namespaces": lambda a: [
        x for x in a if x not in ("--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")
    ],
    "the object store read-only": lambda a: _pairs(
        a, lambda flag, src: not (flag == "--ro-bind" and src.endswith("/objects"))
    ),
    "`/etc`'s large directories bound over the copy": lambda a: _pairs(
        a, lambda flag, src: not (flag == "--ro-bind" and src.startswith("/etc/"))
    ),
}
KEYRING = "a fresh session keyring (joined on the starting thread, as a run does)"


def protection_costs(repeat: int, work: Path, seed: int) -> list[tuple[str, Stats, Stats]]:
    """Each protection: the full line's start and the line without it, interleaved."""
    repo, worktree = proc_repo(work)
    full = run_view(["true"], repo, worktree, work)
    lines: dict[str, tuple[list[str], bool]] = {"full": (full, True)}
    for name, without in PROTECTIONS.items():
        lines[name] = (without(full), True)
        if lines[name][0] == full:
            raise SystemExit(f"error: the run's sandbox line has no {name}: {full}")
    lines[KEYRING] = (full, False)
    samples: dict[str, list[float]] = {name: [] for name in lines}
    for name in [*lines] * 3:  # warm-up
        _spawn(lines[name][0], keyring=lines[name][1])
    for name in interleaved_order(list(lines), repeat, seed):
        argv, keyring = lines[name]
        samples[name].append(_spawn(argv, keyring=keyring) * 1000)
    whole = Stats.of(samples["full"])
    return [(name, whole, Stats.of(samples[name])) for name in [*PROTECTIONS, KEYRING]]


def protection_table(costs: Sequence[tuple[str, Stats, Stats]]) -> str:
    rows = [
        [name, f"{without.median:.2f}", f"{whole.median - without.median:+.2f}"]
        for name, whole, without in costs
    ]
    whole = costs[0][1].median
    return (
        f"**What each protection costs** (`true` in the run's view, {whole:.2f} ms with "
        "everything; each line started without one protection, all in one shuffled order "
        "per round; the difference is what that protection adds to every sandboxed "
        "process, two of them an iteration):\n\n"
        + markdown_table(["protection left out", "ms without it", "it costs"], rows)
    )


def per_process(python: str, repeat: int, work: Path, seed: int) -> list[Figure]:
    repo, worktree = proc_repo(work)
    commands = {"true": ["true"], "python -c pass": [python, "-c", "pass"]}
    cases: dict[str, Callable[[], float]] = {}
    for name, argv in commands.items():
        boxed = run_view(argv, repo, worktree, work)
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
    costs = protection_table(protection_costs(repeat * 2, ctx.work, ctx.seed))
    details = (
        f"One iteration costs **{added:.1f} ms more** in the sandbox{share}.\n\n{costs}\n{READING}"
    )
    return Section(
        title="Sandbox cost",
        how=how,
        figures=(*process_figures, iteration),
        details=details,
    )
