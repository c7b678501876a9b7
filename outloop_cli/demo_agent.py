"""The demo agent: a scripted stand-in for an LLM coding agent.

``python -m outloop_cli.demo_agent PROMPT_FILE`` reads the prompt outloop
wrote for this turn (the task plus feedback from the last goal run), picks
the first failing test it recognises, applies the scripted fix for it to the
files in the working directory and narrates what it did, as an agent would.
When the prompt names no test it knows (the first turn has no feedback) it
fixes the first bug still in the code. It calls no model and changes nothing
but the lines in its table, ``templates/demo/fixes.json``, which lives next
to the demo project so that the two cannot drift apart.

One fix per turn, never applied twice: the same prompt twice has the effect
of once. Odd or missing input never makes it fail; it exits 0 unless it is
called wrongly (2) or its own table is broken (1).
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

BANNER = "demo agent — a scripted stand-in for an LLM coding agent (no model is called)"

State = Literal["pending", "applied", "missing", "changed"]

# Where a failing test is named, most reliable first. Every pattern captures
# an identifier that contains the test's name as one of its words.
_FAILING_SECTION = re.compile(
    r"^[ \t#*]*failing tests\b[^\n]*:[ \t]*$", re.IGNORECASE | re.MULTILINE
)
_BULLET = re.compile(r"^[ \t]*[-*][ \t]+(\S.*)$")
_FAILURE_LINES = (
    # unittest summary:       FAIL: test_x (tests.test_mod.TestCase.test_x)
    re.compile(r"^[ \t]*(?:FAIL|ERROR): (\S+)", re.MULTILINE),
    # unittest -v progress:   test_x (tests.test_mod.TestCase.test_x) ... FAIL
    re.compile(r"^[ \t]*(\w+) \([^)\n]*\) \.\.\. (?:FAIL|ERROR)\b", re.MULTILINE),
    # pytest summary:         FAILED tests/test_mod.py::TestCase::test_x - AssertionError
    re.compile(r"^[ \t]*(?:FAILED|ERROR) (\S+::\S+)", re.MULTILINE),
    # pytest -v progress:     tests/test_mod.py::TestCase::test_x FAILED
    re.compile(r"^[ \t]*(\S+::\S+) (?:FAILED|ERROR)\b", re.MULTILINE),
)
_WORD = re.compile(r"\w+")
_SECTION_LIMIT = 64 * 1024  # characters read after a "Failing tests:" header


class FixTableError(Exception):
    """The agent's own table of fixes is missing or malformed."""


@dataclass(frozen=True)
class Fix:
    """One scripted fix: the test it makes pass and the edit that does it."""

    test: str
    file: str
    old: str
    new: str
    problem: str
    change: str


def load_fixes(path: Path | None = None) -> tuple[Fix, ...]:
    """Read and check the table of fixes (by default the bundled demo's)."""
    if path is None:
        # imported only here: run as a script in the sandbox, the agent is given --fixes
        from outloop_cli.templates_dir import demo_fixes_file

        path = demo_fixes_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FixTableError(f"cannot read {path}: {exc}") from exc
    entries = data.get("fixes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise FixTableError(f"{path}: expected a non-empty list under 'fixes'")
    fixes: list[Fix] = []
    for number, entry in enumerate(entries, 1):
        names = ("test", "file", "old", "new", "problem", "change")
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(name), str) and entry[name] for name in names
        ):
            raise FixTableError(f"{path}: fix {number} needs the strings {', '.join(names)}")
        fix = Fix(**{name: entry[name] for name in names})
        relative = PurePosixPath(fix.file)
        if relative.is_absolute() or ".." in relative.parts:
            raise FixTableError(f"{path}: fix {number}: file must be inside the project")
        fixes.append(fix)
    return tuple(fixes)


def failing_tests(prompt: str) -> list[str]:
    """Identifiers of the failing tests named in the prompt, most trusted first, once each.

    A ``Failing tests:`` section (from a JUnit report) comes first, then the
    failures found in the test output's tail.
    """
    found: list[str] = []
    for match in _FAILING_SECTION.finditer(prompt):
        section = prompt[match.end() : match.end() + _SECTION_LIMIT]
        for line in section.lstrip("\r\n").splitlines():
            bullet = _BULLET.match(line)
            if bullet is None:
                if line.strip():
                    break
                continue
            found.append(bullet.group(1).strip().strip("`"))
    mentions: list[tuple[int, str]] = []
    for pattern in _FAILURE_LINES:
        mentions.extend((m.start(), m.group(1)) for m in pattern.finditer(prompt))
    found.extend(name for _, name in sorted(mentions))
    unique: dict[str, str] = {}
    for identifier in found:
        if identifier:
            unique.setdefault(_short(identifier), identifier)
    return list(unique.values())


def recognise(identifiers: Iterable[str], fixes: Sequence[Fix]) -> list[Fix]:
    """The fixes for the tests named in ``identifiers``, in the same order."""
    by_test = {fix.test: fix for fix in fixes}
    chosen: list[Fix] = []
    for identifier in identifiers:
        for word in _WORD.findall(identifier):
            fix = by_test.get(word)
            if fix is not None and fix not in chosen:
                chosen.append(fix)
    return chosen


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _edit(fix: Fix, content: str) -> tuple[str, str]:
    """``old`` and ``new`` in the file's own line endings."""
    if "\r\n" in content:
        return fix.old.replace("\n", "\r\n"), fix.new.replace("\n", "\r\n")
    return fix.old, fix.new


def state_of(fix: Fix, workdir: Path) -> State:
    """Whether ``fix`` can be applied in ``workdir``, already is, or cannot be."""
    content = _read(workdir / fix.file)
    if content is None:
        return "missing"
    old, new = _edit(fix, content)
    if content.count(old) == 1:
        return "pending"
    if old not in content and new in content:
        return "applied"
    return "changed"


def apply(fix: Fix, workdir: Path) -> list[str]:
    """Apply a pending fix; return the changed lines as a short diff."""
    path = workdir / fix.file
    content = _read(path)
    if content is None:
        raise OSError(f"cannot read {fix.file}")
    old, new = _edit(fix, content)
    updated = content.replace(old, new, 1)
    path.write_bytes(updated.encode("utf-8"))
    diff = difflib.unified_diff(content.splitlines(), updated.splitlines(), n=0, lineterm="")
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def choose(prompt: str, fixes: Sequence[Fix], workdir: Path) -> tuple[Fix | None, list[str]]:
    """The fix to make this turn (or None), and the reasoning to narrate.

    The first failing test in the prompt that has a scripted fix decides; if
    its fix is already in place the turn changes nothing, so that the same
    prompt twice has the effect of once. Without such a test, the first bug
    still in the code is fixed.
    """
    notes: list[str] = []
    named = failing_tests(prompt)
    if named:
        shown = ", ".join(_short(name) for name in named[:5])
        more = f" and {len(named) - 5} more" if len(named) > 5 else ""
        notes.append(f"The feedback names {len(named)} failing test(s): {shown}{more}.")
    wanted = recognise(named, fixes)
    if wanted:
        fix = wanted[0]
        state = state_of(fix, workdir)
        if state == "pending":
            return fix, notes
        notes.append(f"{fix.test}: {_STATE_NOTES[state].format(file=fix.file)}")
        notes.append("I have no other idea for it; changing nothing this turn.")
        return None, notes
    if named:
        notes.append("I have no scripted fix for any of them; looking for a known bug instead.")
    else:
        notes.append("The prompt names no failing test (no feedback yet); looking for a known bug.")
    for fix in fixes:
        if state_of(fix, workdir) == "pending":
            return fix, notes
    notes.append(f"Nothing left to fix: none of my {len(fixes)} known bugs is in the code.")
    return None, notes


_STATE_NOTES: dict[State, str] = {
    "applied": "my scripted fix is already in {file}, so it fails for some other reason.",
    "missing": "{file} is missing or unreadable here.",
    "changed": "{file} no longer looks the way my script expects.",
    "pending": "my scripted fix applies to {file}.",
}


def _short(identifier: str) -> str:
    """The test's own name in a qualified identifier: ``pkg.mod.Case.test_x`` -> ``test_x``."""
    words = _WORD.findall(identifier)
    tests = [word for word in words if word.startswith("test") and word != "tests"]
    return tests[-1] if tests else identifier[:80]


def run(prompt_file: Path, workdir: Path, fixes: Sequence[Fix]) -> list[str]:
    """One turn: read the prompt, make at most one fix. Returns the narration."""
    lines = [BANNER]
    prompt = _read_prompt(prompt_file)
    if prompt is None:
        lines.append(f"Could not read the prompt file {prompt_file}; going by the code alone.")
        prompt = ""
    else:
        lines.append(f"Read the task and outloop's feedback from {prompt_file.name}.")
    fix, notes = choose(prompt, fixes, workdir)
    lines.extend(notes)
    if fix is None:
        return lines
    lines.append(f"Working on {fix.test}: {fix.problem}")
    try:
        diff = apply(fix, workdir)
    except OSError as exc:
        lines.append(f"Could not edit {fix.file}: {exc}. Leaving the code as it is.")
        return lines
    lines.append(f"Edited {fix.file}: {fix.change}.")
    lines.extend(f"  {line}" for line in diff)
    remaining = sum(1 for other in fixes if state_of(other, workdir) == "pending")
    if remaining:
        lines.append(f"One fix per turn: {remaining} known bug(s) left for the next round.")
    else:
        lines.append("That was the last bug I know of; the tests should pass now.")
    return lines


def _read_prompt(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m outloop_cli.demo_agent",
        description=BANNER,
    )
    parser.add_argument("prompt_file", type=Path, help="the prompt outloop wrote for this turn")
    parser.add_argument(
        "--workdir", type=Path, default=Path(), help="the project to edit (default: .)"
    )
    parser.add_argument(
        "--fixes", type=Path, default=None, help="the table of fixes (default: the bundled one)"
    )
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # never fail on a terminal that cannot show the dash in the banner
        sys.stdout.reconfigure(errors="replace")
    try:
        fixes = load_fixes(args.fixes)
    except FixTableError as exc:
        print(f"{BANNER}\nerror: {exc}", file=sys.stderr)
        return 1
    for line in run(args.prompt_file, args.workdir, fixes):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
