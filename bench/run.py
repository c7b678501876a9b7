"""Every benchmark, one command, one report: ``docs/benchmarks.md`` and its JSON twin.

    .venv/bin/python bench/run.py                                  # all sections, report on stdout
    .venv/bin/python bench/run.py --write docs/benchmarks.md --json docs/benchmarks.json
    .venv/bin/python bench/run.py --only audit,sandbox --quick     # tiny inputs: does it all run?

Runs every ``bench/section_<name>.py`` (or those ``--only`` names), each
through its ``collect(ctx) -> Section`` (the contract at the bottom of
``bench/_common.py``), and writes one report: the machine, date, commit, the
exact command, the load average before and after, a summary of every figure
against its floor and target, then each section's method and details. A
section that raises fails the command, naming it; nothing is written then,
so a committed report always holds every section it names.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common
from _common import (
    REPO_ROOT,
    BenchContext,
    Figure,
    Section,
    Stats,
    figure_dict,
    find_outloop,
    interpreter_of,
    load_average,
    machine_facts,
    markdown_table,
    met_of,
    ratio_of,
    source_state,
    target_text,
    utc_now,
)

# a section may import the contract as `_common` or as `bench._common`: one module either way,
# so the Section and Figure it returns are the classes checked here
sys.modules.setdefault("bench._common", _common)

BENCH = Path(__file__).resolve().parent

PREFIX = "section_"
SCHEMA = 1


def discover(directory: Path = BENCH) -> dict[str, Path]:
    """Section name → file, for every ``section_<name>.py`` beside this script."""
    return {
        path.stem[len(PREFIX) :]: path
        for path in sorted(directory.glob(f"{PREFIX}*.py"))
        if path.stem != PREFIX.rstrip("_")
    }


@dataclass(frozen=True)
class Outcome:
    name: str
    seconds: float
    section: Section | None = None
    error: str | None = None


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{PREFIX}{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _problem(section: object) -> str | None:
    """Why a section's return value is not a report section; None when it is one."""
    if not isinstance(section, Section):
        return f"collect() returned {type(section).__name__}, not a Section"
    if not section.figures:
        return "collect() returned no figures"
    for figure in section.figures:
        if not isinstance(figure, Figure):
            return f"a figure is a {type(figure).__name__}, not a Figure"
        if not isinstance(figure.measured, Stats) or not isinstance(figure.floor, Stats):
            return f"figure {figure.name!r}: measured and floor must be Stats"
    return None


def run_section(name: str, path: Path, ctx: BenchContext) -> Outcome:
    started = time.perf_counter()
    try:
        section = _load(name, path).collect(ctx)
    except (Exception, SystemExit):  # _common.timed_run fails with SystemExit
        return Outcome(name, time.perf_counter() - started, error=traceback.format_exc())
    elapsed = time.perf_counter() - started
    problem = _problem(section)
    if problem is not None:
        return Outcome(name, elapsed, error=problem)
    return Outcome(name, elapsed, section=section)


def _digits(value: float) -> int:
    size = abs(value)
    return 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 0.1 else 4


def _value(stats: Stats, unit: str) -> str:
    d = _digits(stats.median)
    return f"{stats.median:.{d}f} [{stats.q1:.{d}f}–{stats.q3:.{d}f}] {unit}"


def _met(figure: Figure) -> str:
    met = met_of(figure)
    if met is None:
        return "–" if figure.target_ratio is None else "n/a"
    return "yes" if met else "**no**"


def _ratio(figure: Figure) -> str:
    ratio = ratio_of(figure)
    return "n/a" if ratio is None else f"{ratio:.2f}×"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _load_text(load: tuple[float, float, float] | None) -> str:
    if load is None:
        return "unknown"
    return " / ".join(f"{value:.2f}" for value in load) + " (1 / 5 / 15 min)"


@dataclass(frozen=True)
class Report:
    date: str
    commit: str
    dirty: bool
    command: str
    quick: bool
    seed: int
    machine: dict[str, str]
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None
    outcomes: tuple[Outcome, ...]

    def markdown(self) -> str:
        commit = self.commit + (" (with uncommitted changes)" if self.dirty else "")
        total = sum(o.seconds for o in self.outcomes)
        lines = [
            "# Benchmarks",
            "",
            f"Measured {self.date} at commit {commit} with",
            "",
            f"    {self.command}",
            "",
            "Every figure is a median over interleaved repeats with its interquartile range in "
            "brackets, measured side by side with the floor it is compared with; the ratio is "
            "measured / floor (for a higher-is-better figure, such as a throughput, the target "
            "is a lower bound). Generated by `bench/run.py`; do not edit by hand.",
        ]
        if self.quick:
            lines += ["", "**`--quick`: tiny inputs and few repeats; not numbers to quote.**"]
        lines += ["", "## Machine", ""]
        lines += [f"- {what}: {value}" for what, value in self.machine.items()]
        lines += [
            f"- load average before: {_load_text(self.load_before)}",
            f"- load average after: {_load_text(self.load_after)}",
            f"- time taken: {total:.0f} s ("
            + ", ".join(f"{o.name} {o.seconds:.0f} s" for o in self.outcomes)
            + ")",
            "",
            "## Summary",
            "",
        ]
        rows = []
        for outcome in self.outcomes:
            assert outcome.section is not None
            for figure in outcome.section.figures:
                rows.append(
                    [
                        _cell(outcome.section.title),
                        _cell(figure.name),
                        _value(figure.measured, figure.unit),
                        _cell(figure.floor_name),
                        _value(figure.floor, figure.unit),
                        _ratio(figure),
                        target_text(figure),
                        _met(figure),
                    ]
                )
        header = ["section", "figure", "measured", "floor", "floor measured", "ratio"]
        lines.append(markdown_table([*header, "target", "met"], rows))
        for outcome in self.outcomes:
            section = outcome.section
            assert section is not None
            lines += [f"## {section.title}", "", section.how.strip(), ""]
            notes = [f"- {f.name}: {f.note}" for f in section.figures if f.note]
            if notes:
                lines += [*notes, ""]
            if section.details.strip():
                lines += [section.details.strip(), ""]
        return "\n".join(lines).rstrip() + "\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "date": self.date,
            "commit": self.commit,
            "dirty": self.dirty,
            "command": self.command,
            "quick": self.quick,
            "seed": self.seed,
            "machine": self.machine,
            "load_before": list(self.load_before) if self.load_before else None,
            "load_after": list(self.load_after) if self.load_after else None,
            "sections": [
                {
                    "name": o.name,
                    "title": o.section.title,
                    "seconds": o.seconds,
                    "how": o.section.how,
                    "details": o.section.details,
                    "figures": [figure_dict(f) for f in o.section.figures],
                }
                for o in self.outcomes
                if o.section is not None
            ],
        }


def _command(argv: Sequence[str]) -> str:
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(REPO_ROOT))
    except ValueError:
        shown = str(python)
    script = Path(__file__).resolve()
    try:
        script_shown = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_shown = str(script)
    return shlex.join([shown, script_shown, *argv])


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "outloop-bench"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated section names (default: every section)")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, few repeats")
    parser.add_argument("--seed", type=int, default=1, help="seeds every interleaved order")
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the report's data as JSON here")
    parser.add_argument("--outloop", help="the console script to time (default: beside Python)")
    parser.add_argument("--cache-dir", type=Path, help="long-lived inputs (big repositories, logs)")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(args_list)

    found = discover()
    names = list(found)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in found]
        if unknown:
            parser.error(
                f"no section named {', '.join(unknown)} (sections: {', '.join(found) or 'none'})"
            )
    if not names:
        parser.error(f"no {PREFIX}*.py in {BENCH}")

    outloop = find_outloop(args.outloop)
    python = interpreter_of(outloop)
    cache = (args.cache_dir or _default_cache()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="outloop-bench-"))
    commit, dirty = source_state()
    date = utc_now()
    machine = machine_facts(outloop, python, {"the scratch directory": work, "the cache": cache})
    load_before = load_average()
    outcomes: list[Outcome] = []
    try:
        for name in names:
            sys.stderr.write(f"== {name}\n")
            section_work = work / name
            section_work.mkdir()
            ctx = BenchContext(
                outloop=outloop,
                python=python,
                work=section_work,
                cache=cache,
                quick=args.quick,
                seed=args.seed,
            )
            outcome = run_section(name, found[name], ctx)
            outcomes.append(outcome)
            if outcome.error is not None:
                sys.stderr.write(f"error: section {name} failed:\n{outcome.error.rstrip()}\n")
            else:
                sys.stderr.write(f"   {name}: {outcome.seconds:.1f} s\n")
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    load_after = load_average()
    failed = [o.name for o in outcomes if o.error is not None]
    if failed:
        sys.stderr.write(
            f"error: {len(failed)} section(s) failed: {', '.join(failed)}; nothing was written\n"
        )
        return 1
    report = Report(
        date=date,
        commit=commit,
        dirty=dirty,
        command=_command(args_list),
        quick=args.quick,
        seed=args.seed,
        machine=machine,
        load_before=load_before,
        load_after=load_after,
        outcomes=tuple(outcomes),
    )
    text = report.markdown()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n")
    if not args.write:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
