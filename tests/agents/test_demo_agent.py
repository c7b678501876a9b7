"""The demo agent against a real copy of the demo project, as real subprocesses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from outloop_cli.demo_agent import (
    BANNER,
    Fix,
    FixTableError,
    failing_tests,
    load_fixes,
    recognise,
)
from outloop_cli.templates_dir import demo_fixes_file, demo_project_dir

TASK = "Make the failing tests pass without deleting tests.\n"
FAILURE = re.compile(r"^(?:FAIL|ERROR): (\w+) \(", re.MULTILINE)
FIXES = load_fixes()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the demo project."""
    target = tmp_path / "project"
    shutil.copytree(
        demo_project_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


def run_tests(project: Path) -> tuple[int, str]:
    """``python -m unittest -v`` in the project: exit code and combined output."""
    result = subprocess.run(
        [sys.executable, "-B", "-m", "unittest", "-v"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


def failures(output: str) -> list[str]:
    return FAILURE.findall(output)


def run_agent(project: Path, prompt: str | bytes | None) -> subprocess.CompletedProcess[str]:
    """Write the prompt file outside the project and run the agent on it."""
    prompt_file = project.parent / "prompt.md"
    if isinstance(prompt, bytes):
        prompt_file.write_bytes(prompt)
    elif prompt is not None:
        prompt_file.write_text(prompt, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-B", "-m", "outloop_cli.demo_agent", str(prompt_file)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )


def snapshot(project: Path) -> dict[str, str]:
    return {
        str(path.relative_to(project)): path.read_text(encoding="utf-8")
        for path in sorted(project.rglob("*.py"))
    }


def feedback_prompt(output: str) -> str:
    """The task plus the goal output's tail, the way outloop hands it on."""
    tail = "\n".join(output.splitlines()[-60:])
    return f"{TASK}\n## Feedback from the last check (exit 1)\n\n```\n{tail}\n```\n"


def apply_directly(project: Path, fix: Fix) -> None:
    path = project / fix.file
    path.write_text(path.read_text(encoding="utf-8").replace(fix.old, fix.new), encoding="utf-8")


def test_demo_project_fails_exactly_three_tests(project: Path) -> None:
    code, output = run_tests(project)
    assert code == 1
    assert sorted(failures(output)) == sorted(fix.test for fix in FIXES)
    assert "FAILED (failures=3)" in output
    assert re.search(r"^Ran 1\d tests", output, re.MULTILINE)


def test_each_round_fixes_the_first_failure_until_green(project: Path) -> None:
    code, output = run_tests(project)
    failing = failures(output)
    assert len(failing) == 3
    for round_number in range(1, 4):
        result = run_agent(project, feedback_prompt(output))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(BANNER)
        assert f"Working on {failing[0]}:" in result.stdout
        code, output = run_tests(project)
        now_failing = failures(output)
        assert now_failing == failing[1:], f"round {round_number}"
        failing = now_failing
    assert code == 0
    assert failing == []
    assert re.search(r"^OK$", output, re.MULTILINE)


def test_failing_tests_section_comes_before_the_output(project: Path) -> None:
    _, output = run_tests(project)
    last = failures(output)[-1]
    prompt = feedback_prompt(output) + f"\nFailing tests:\n- tests.test_textstats.Case.{last}\n"
    result = run_agent(project, prompt)
    assert result.returncode == 0
    assert f"Working on {last}:" in result.stdout
    _, output = run_tests(project)
    assert last not in failures(output)
    assert len(failures(output)) == 2


def test_prompt_without_feedback_fixes_the_first_remaining_bug(project: Path) -> None:
    first, second = FIXES[0], FIXES[1]
    apply_directly(project, first)
    before = snapshot(project)
    result = run_agent(project, TASK)
    assert result.returncode == 0
    assert "names no failing test" in result.stdout
    after = snapshot(project)
    changed = [name for name in after if after[name] != before[name]]
    assert changed == [second.file]
    assert after[second.file] == before[second.file].replace(second.old, second.new)


def test_nothing_left_to_fix_changes_nothing(project: Path) -> None:
    for fix in FIXES:
        apply_directly(project, fix)
    before = snapshot(project)
    result = run_agent(project, TASK)
    assert result.returncode == 0
    assert "Nothing left to fix" in result.stdout
    assert snapshot(project) == before
    assert run_tests(project)[0] == 0


def test_same_prompt_twice_has_the_effect_of_once(project: Path) -> None:
    _, output = run_tests(project)
    prompt = feedback_prompt(output)
    assert run_agent(project, prompt).returncode == 0
    once = snapshot(project)
    second = run_agent(project, prompt)
    assert second.returncode == 0
    assert "already in" in second.stdout
    assert snapshot(project) == once


@pytest.mark.parametrize(
    "prompt",
    [
        b"\x00\xff\xfe garbage \x89PNG\r\n\x1a\n",
        "FAIL: \nERROR: (\n... FAIL\nFailing tests:\n- \n-\n* `` \n" * 50,
        "Failing tests:\n- tests.test_other.TestNothing.test_unknown\n",
        "",
    ],
    ids=["binary", "broken-markers", "unknown-test", "empty"],
)
def test_odd_prompts_never_crash(project: Path, prompt: str | bytes) -> None:
    result = run_agent(project, prompt)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # with nothing it recognises, it fixes the first known bug
    assert FIXES[0].new in (project / FIXES[0].file).read_text(encoding="utf-8")


def test_missing_prompt_file_and_missing_project_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_agent(empty, None)
    assert result.returncode == 0, result.stderr
    assert "Could not read the prompt file" in result.stdout
    assert "Nothing left to fix" in result.stdout
    assert list(empty.iterdir()) == []


def test_a_named_test_whose_file_changed_is_left_alone(project: Path) -> None:
    fix = FIXES[0]
    (project / fix.file).write_text("# rewritten by hand\n", encoding="utf-8")
    before = snapshot(project)
    result = run_agent(project, f"Failing tests:\n- {fix.test}\n")
    assert result.returncode == 0
    assert "no longer looks the way" in result.stdout
    assert snapshot(project) == before


def test_crlf_files_are_fixed_in_their_own_line_endings(project: Path) -> None:
    fix = FIXES[0]
    path = project / fix.file
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert run_agent(project, f"FAIL: {fix.test} (x)\n").returncode == 0
    data = path.read_bytes()
    assert fix.new.replace("\n", "\r\n").encode() in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_fix_table_matches_the_demo_project() -> None:
    tests = (demo_project_dir() / "tests" / "test_textstats.py").read_text(encoding="utf-8")
    assert len({fix.test for fix in FIXES}) == len(FIXES) == 3
    for fix in FIXES:
        source = (demo_project_dir() / fix.file).read_text(encoding="utf-8")
        assert source.count(fix.old) == 1, fix.test
        assert fix.new not in source, fix.test
        assert fix.old not in source.replace(fix.old, fix.new), fix.test
        assert f"def {fix.test}(self)" in tests


def test_failing_tests_are_read_from_the_usual_formats() -> None:
    prompt = "\n".join(
        [
            "Fix the tests.",
            "test_a (tests.t.TestA.test_a) ... ok",
            "test_b (tests.t.TestB.test_b) ... FAIL",
            "test_c (tests.t.TestC) ... ERROR",
            "FAIL: test_b (tests.t.TestB.test_b)",
            "FAILED tests/t.py::TestD::test_d - AssertionError: boom",
            "tests/t.py::TestE::test_e[1-2] FAILED",
            "FAILED (failures=3)",
            "Failing tests (2):",
            "- `pkg.TestF.test_f`",
            "",
            "- tests.t.TestB.test_b",
            "That's all.",
            "- test_not_in_section",
        ]
    )
    names = failing_tests(prompt)
    assert names == [
        "pkg.TestF.test_f",
        "tests.t.TestB.test_b",
        "test_c",
        "tests/t.py::TestD::test_d",
        "tests/t.py::TestE::test_e[1-2]",
    ]
    table = (
        Fix("test_e", "e.py", "o", "n", "p", "c"),
        Fix("test_c", "c.py", "o", "n", "p", "c"),
    )
    assert [fix.test for fix in recognise(names, table)] == ["test_c", "test_e"]


def test_broken_fix_table_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "fixes.json"
    for content in ("{", json.dumps({"fixes": []}), json.dumps({"fixes": [{"test": "x"}]})):
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(FixTableError):
            load_fixes(bad)
    entry = {"test": "t", "file": "../x.py", "old": "a", "new": "b", "problem": "p", "change": "c"}
    bad.write_text(json.dumps({"fixes": [entry]}), encoding="utf-8")
    with pytest.raises(FixTableError, match="inside the project"):
        load_fixes(bad)
    assert load_fixes(demo_fixes_file()) == FIXES
