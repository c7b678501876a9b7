"""`bench/run.py`, the one bench command: every section runs, one report and its JSON come out.

No timing is asserted: `--quick` runs each section on tiny inputs against the
real installed CLI and the checks are on what the report says and how it is
laid out. Sections are discovered the way the command discovers them, so a
section added later is covered here without a change.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SECTIONS = sorted(p.stem.removeprefix("section_") for p in BENCH.glob("section_*.py"))
MACHINE = ("cpu", "cores", "memory", "os", "python", "git", "bubblewrap", "outloop")


def bench_run(
    *args: str, script: Path = BENCH / "run.py", timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _summary_rows(markdown: str) -> list[list[str]]:
    summary = markdown.split("## Summary\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| section | figure | measured | floor | floor measured | ratio")
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def _check_figure(figure: dict[str, Any]) -> None:
    for side in ("measured", "floor"):
        stats = figure[side]
        assert stats["n"] >= 1
        assert stats["q1"] <= stats["median"] <= stats["q3"], figure
    assert figure["unit"] and figure["floor_name"] and figure["name"]
    target, ratio, met = figure["target_ratio"], figure["ratio"], figure["met"]
    if ratio is not None:
        assert ratio == pytest.approx(figure["measured"]["median"] / figure["floor"]["median"])
    if target is None or ratio is None:
        assert met is None
    elif figure["higher_is_better"]:
        assert met == (ratio >= target)
    else:
        assert met == (ratio <= target)


@pytest.mark.slow
def test_every_section_runs_quick_into_one_report_and_its_json(tmp_path: Path) -> None:
    report, data_path = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    cache = tmp_path / "cache"
    args = ["--quick", "--cache-dir", str(cache), "--write", str(report), "--json", str(data_path)]

    done = bench_run(*args)

    assert done.returncode == 0, done.stderr[-6000:]
    data = json.loads(data_path.read_text())
    markdown = report.read_text()
    # every discovered section, in order, none silently dropped
    assert [s["name"] for s in data["sections"]] == SECTIONS
    assert {"audit", "sandbox"} <= set(SECTIONS)
    # the machine, the date, the commit, the exact command, the load before and after
    assert set(MACHINE) <= set(data["machine"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", data["date"])
    assert re.fullmatch(r"[0-9a-f]{12}", data["commit"])
    assert data["command"].endswith("bench/run.py " + " ".join(args))
    assert len(data["load_before"]) == 3 and len(data["load_after"]) == 3
    assert data["quick"] is True
    for key in MACHINE:
        assert f"- {key}: " in markdown
    assert "- load average before: " in markdown and "- load average after: " in markdown
    assert f"    {data['command']}\n" in markdown
    assert "`--quick`" in markdown
    # one summary row per figure, with the figure's numbers as the JSON has them
    rows = _summary_rows(markdown)
    figures = [(s, f) for s in data["sections"] for f in s["figures"]]
    assert len(rows) == len(figures)
    for row, (section, figure) in zip(rows, figures, strict=True):
        _check_figure(figure)
        title, name, measured, floor_name, floor, ratio, target, met = row
        assert (title, name.replace("\\|", "|")) == (section["title"], figure["name"])
        assert measured.endswith(f"] {figure['unit']}") and floor.endswith(f"] {figure['unit']}")
        assert floor_name.replace("\\|", "|") == figure["floor_name"]
        if figure["ratio"] is not None:
            assert ratio == f"{figure['ratio']:.2f}×"
        if figure["target_ratio"] is None:
            assert (target, met) == ("info", "–")
        else:
            sign = "≥" if figure["higher_is_better"] else "≤"
            assert target == f"{sign} {figure['target_ratio']:g}×"
            assert met == {True: "yes", False: "**no**", None: "n/a"}[figure["met"]]
    # then each section: its title, how it was measured, its details
    for section in data["sections"]:
        assert f"\n## {section['title']}\n" in markdown
        assert section["how"].strip() and section["how"].strip() in markdown
        assert section["details"].strip() in markdown
    # the audit figure: verify's throughput against sha256sum's, higher is better
    (audit,) = [s for s in data["sections"] if s["name"] == "audit"]
    (verify,) = audit["figures"]
    assert (verify["unit"], verify["floor_name"], verify["target_ratio"]) == (
        "MB/s",
        "sha256sum",
        0.3,
    )
    assert verify["higher_is_better"] is True
    assert "Before (commit" in audit["details"]
    # the sandbox figures are information: no target
    (sandbox,) = [s for s in data["sections"] if s["name"] == "sandbox"]
    assert all(f["target_ratio"] is None for f in sandbox["figures"])
    assert len(sandbox["figures"]) == 3
    # the million-event log is cached for the next run; the scratch directory is gone
    assert (cache / "audit-10000" / "done").is_file()


def _fake_bench(tmp_path: Path, sections: dict[str, str]) -> Path:
    bench = tmp_path / "bench"
    bench.mkdir()
    for name in ("run.py", "_common.py"):
        shutil.copy(BENCH / name, bench / name)
    for name, body in sections.items():
        (bench / f"section_{name}.py").write_text(body)
    return bench / "run.py"


FINE = """
from _common import Figure, Section, Stats

def collect(ctx):
    assert ctx.work.is_dir() and ctx.quick
    (ctx.work / "ran").write_text("yes")
    figure = Figure("a figure", Stats.of([2.0, 3.0]), "a floor", Stats.of([1.0, 1.0]), "ms", 1.5)
    return Section("Fine", "how it is measured", (figure,), "details")
"""

BOOM = """
def collect(ctx):
    raise RuntimeError("the thing timed did not do its job")
"""

NOT_A_SECTION = """
def collect(ctx):
    return {"title": "a dict"}
"""


def test_a_section_that_raises_fails_the_command_by_name_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    script = _fake_bench(tmp_path, {"boom": BOOM, "fine": FINE, "odd": NOT_A_SECTION})
    report, data = tmp_path / "out.md", tmp_path / "out.json"

    done = bench_run(
        "--quick", "--cache-dir", str(tmp_path / "c"), "--write", str(report), "--json", str(data),
        script=script, timeout=120,
    )  # fmt: skip

    assert done.returncode == 1
    assert "error: section boom failed:" in done.stderr
    assert "RuntimeError: the thing timed did not do its job" in done.stderr
    assert "error: section odd failed:\ncollect() returned dict, not a Section" in done.stderr
    assert "2 section(s) failed: boom, odd; nothing was written" in done.stderr
    # the other section still ran, but no report claims to hold every section
    assert "   fine: " in done.stderr
    assert not report.exists() and not data.exists()


def test_only_runs_the_named_sections_and_refuses_unknown_names(tmp_path: Path) -> None:
    script = _fake_bench(tmp_path, {"boom": BOOM, "fine": FINE})
    data = tmp_path / "out.json"

    done = bench_run(
        "--quick", "--only", "fine", "--json", str(data), "--cache-dir", str(tmp_path / "c"),
        script=script, timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    sections = json.loads(data.read_text())["sections"]
    assert [s["name"] for s in sections] == ["fine"]
    assert sections[0]["figures"][0]["met"] is False  # 2.5 / 1.0 > 1.5
    # without --write, the report goes to stdout
    assert done.stdout.startswith("# Benchmarks\n")
    assert "| Fine | a figure | 2.50 [2.25–2.75] ms | a floor | 1.00 [1.00–1.00] ms | 2.50× |" in (
        done.stdout
    )

    unknown = bench_run("--only", "fine,nope", script=script, timeout=120)
    assert unknown.returncode == 2
    assert "no section named nope (sections: boom, fine)" in unknown.stderr


AS_PACKAGE = """
from bench._common import Figure, Section, Stats

def collect(ctx):
    figure = Figure("rate", Stats.of([1.0]), "floor", Stats.of([2.0]), "MB/s", 0.3, True)
    return Section("Package", "how", (figure,))
"""


def test_a_section_importing_the_contract_as_a_package_module_is_the_same_contract(
    tmp_path: Path,
) -> None:
    script = _fake_bench(tmp_path, {"pkg": AS_PACKAGE})
    data = tmp_path / "out.json"

    done = bench_run(
        "--quick",
        "--json",
        str(data),
        "--cache-dir",
        str(tmp_path / "c"),
        script=script,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    (figure,) = json.loads(data.read_text())["sections"][0]["figures"]
    # higher is better: 0.5 of the floor meets "at least 0.3"
    assert (figure["ratio"], figure["met"]) == (0.5, True)
