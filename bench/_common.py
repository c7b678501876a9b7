"""Helpers shared by the benchmarks: finding the CLI, isolating user state, statistics, reports.

The benchmarks time the real ``outloop`` console script as a subprocess, the
way a user or a CI job starts it, never functions imported in-process.
"""

from __future__ import annotations

import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

BENCH_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench User",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench User",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def find_outloop(explicit: str | None) -> Path:
    """The console script to time: ``--outloop``, else the one next to this Python, else PATH."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SystemExit(f"error: --outloop {explicit} is not a file")
        return path
    beside = Path(sys.executable).parent / "outloop"
    if beside.is_file():
        return beside
    found = shutil.which("outloop")
    if found is None:
        raise SystemExit(
            "error: no `outloop` console script found; install the package "
            "(pip install -e .) or pass --outloop PATH"
        )
    return Path(found)


def interpreter_of(script: Path) -> str:
    """The Python a console script runs under (its shebang), so the baseline uses the same one."""
    first = script.read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    if first.startswith("#!"):
        words = shlex.split(first[2:])
        # "#!/usr/bin/env python3" names the interpreter in its second word
        if words and Path(words[0]).name == "env" and len(words) > 1:
            resolved = shutil.which(words[1])
            if resolved:
                return resolved
        elif words:
            return words[0]
    return sys.executable


def isolated_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment with user state moved into ``home``.

    No user config (git's, outloop's policy, keyring) can slow down or
    change a run, and nothing the benchmark does lands in the real home.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Bench User\n\temail = bench@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "OUTLOOP_"))}
    env["HOME"] = str(home)
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env.update(BENCH_IDENTITY)
    env.update(extra or {})
    return env


def timed_run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    ok_codes: Sequence[int] = (0,),
) -> float:
    """Wall-clock seconds of one run of ``argv``; fails loudly on an unexpected exit code."""
    started = time.perf_counter()
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in ok_codes:
        raise SystemExit(
            f"error: {shlex.join(argv)} (in {cwd}) exited {done.returncode}, "
            f"expected {' or '.join(map(str, ok_codes))}\n"
            + done.stderr.decode(errors="replace")[-4000:]
        )
    return elapsed


def interleaved_order(names: Sequence[str], repeat: int, seed: int) -> list[str]:
    """Every name once per round, in a shuffled order per round.

    Interleaving spreads slow drifts of the machine (other load, CPU
    frequency, page cache) over all cases instead of charging one of them.
    """
    rng = random.Random(seed)
    order: list[str] = []
    for _ in range(repeat):
        round_ = list(names)
        rng.shuffle(round_)
        order.extend(round_)
    return order


@dataclass(frozen=True)
class Stats:
    median: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        if len(samples) == 1:
            return cls(samples[0], samples[0], samples[0], 1)
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        return cls(statistics.median(samples), q1, q3, len(samples))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
            return f"{kib / 1024 / 1024:.1f} GiB"
    return "unknown"


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts), e.g. ``ext4`` or ``overlay``."""
    best, fstype = "", "unknown"
    resolved = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, fstype = mount, parts[2]
    return fstype


def _version_of(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def _source_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _load() -> str:
    """Load average when the report was written: other work on the machine skews timings."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def machine_description(outloop: Path, python: str, data_dir: Path | None = None) -> str:
    """A markdown list of what the numbers depend on."""
    items = [
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"memory: {_memory()}",
        f"OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"Python: {_version_of([python, '--version'])} (`{python}`)",
        f"git: {_version_of(['git', '--version'])}",
        f"outloop: {_version_of([str(outloop), '--version'])} (`{outloop}`), "
        f"source at commit {_source_commit()}",
        f"load: {_load()}",
    ]
    if data_dir is not None:
        items.append(f"filesystem of the benchmark repositories: {filesystem_of(data_dir)}")
    return "\n".join(f"- {item}" for item in items) + "\n"


def reproduce_command(script: str, argv: Sequence[str]) -> str:
    """The command line that produced a report, minus the output option."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--write":
            skip = True
            continue
        if arg.startswith("--write="):
            continue
        kept.append(arg)
    return shlex.join([".venv/bin/python", script, *kept])


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# ---------------------------------------------------------------------------
# The contract between `bench/run.py` (the one command that writes
# docs/benchmarks.md) and the sections it runs. Each section is a module
# `bench/section_<name>.py` with
#
#     def collect(ctx: BenchContext) -> Section
#
# that measures its figures side by side with their floors (interleaved
# repeats) and returns them; it never writes the report itself.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchContext:
    outloop: Path  # the console script under test
    python: str  # the interpreter of its shebang (for `python -c pass` floors)
    work: Path  # a scratch directory this section may fill and leave behind
    cache: Path  # long-lived cache for expensive inputs (big repositories)
    quick: bool  # tiny inputs and few repeats: for tests/test_bench*.py, not for numbers
    seed: int  # seeds every interleaved order


@dataclass(frozen=True)
class Figure:
    """One row of the report: a measurement, the floor it is compared with, and the target."""

    name: str  # e.g. "cost per iteration, 10k files"
    measured: Stats
    floor_name: str  # e.g. "bench/raw_git_loop.sh"
    floor: Stats
    unit: str  # "ms", "MB/s", ...: the unit of measured and floor
    target_ratio: float | None  # measured/floor must be <= this (>= when higher_is_better)
    higher_is_better: bool = False
    note: str = ""  # one line: what was measured, or why a target cannot be met here

    @property
    def ratio(self) -> float:
        return self.measured.median / self.floor.median

    @property
    def met(self) -> bool | None:
        if self.target_ratio is None:
            return None
        if self.higher_is_better:
            return self.ratio >= self.target_ratio
        return self.ratio <= self.target_ratio


@dataclass(frozen=True)
class Section:
    title: str  # e.g. "Access proxy"
    how: str  # markdown: what is run, on what inputs, how many interleaved repeats
    figures: tuple[Figure, ...]
    details: str = ""  # markdown: breakdowns, profiles (before/after), limits


# ---------------------------------------------------------------------------
# Reading the contract back: what `bench/run.py` writes into the report and
# its JSON twin. Additions only; the fields above are the sections' contract.
# ---------------------------------------------------------------------------


def stats_dict(stats: Stats) -> dict[str, float | int]:
    return {"median": stats.median, "q1": stats.q1, "q3": stats.q3, "n": stats.n}


def stats_text(stats: Stats, digits: int = 1) -> str:
    """``median [q1–q3]``, the report's way of giving a measurement with its spread."""
    return f"{stats.median:.{digits}f} [{stats.q1:.{digits}f}–{stats.q3:.{digits}f}]"


def target_text(figure: Figure) -> str:
    if figure.target_ratio is None:
        return "info"
    sign = "≥" if figure.higher_is_better else "≤"
    return f"{sign} {figure.target_ratio:g}×"


def ratio_of(figure: Figure) -> float | None:
    """measured / floor; None when the floor's median is not positive (a difference of noisy
    timings can be), so that no ratio or verdict is made up."""
    return figure.ratio if figure.floor.median > 0 else None


def met_of(figure: Figure) -> bool | None:
    return figure.met if ratio_of(figure) is not None else None


def figure_dict(figure: Figure) -> dict[str, object]:
    return {
        "name": figure.name,
        "unit": figure.unit,
        "measured": stats_dict(figure.measured),
        "floor_name": figure.floor_name,
        "floor": stats_dict(figure.floor),
        "ratio": ratio_of(figure),
        "target_ratio": figure.target_ratio,
        "higher_is_better": figure.higher_is_better,
        "met": met_of(figure),
        "note": figure.note,
    }


def machine_facts(outloop: Path, python: str, dirs: Mapping[str, Path]) -> dict[str, str]:
    """What the numbers depend on, as name → value (the report lists them, the JSON keeps them)."""
    facts = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{_version_of([python, '--version'])} ({python})",
        "git": _version_of(["git", "--version"]),
        "bubblewrap": _version_of(["bwrap", "--version"]),
        "outloop": f"{_version_of([str(outloop), '--version'])} ({outloop})",
    }
    for what, path in dirs.items():
        facts[f"filesystem of {what}"] = f"{filesystem_of(path)} ({path})"
    return facts


def source_state() -> tuple[str, bool]:
    """(the source's commit, whether the work tree has changes the commit does not hold)."""
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return _source_commit(), bool(done.stdout.strip())


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None
