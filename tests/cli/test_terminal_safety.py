"""Strings outloop did not write are made safe before a terminal sees them.

The agent of a real `outloop run` names files with escape sequences: an OSC
that retitles the window, a CSI that clears the screen and moves the cursor
up to overwrite a line with a fake "goal met", a C1 control, a bidi override
that reverses what follows. It adds a loop file (a protected path) with such a name, so
the name reaches the stop message, and an ordinary file, so it reaches the
commit. On a pipe and on a real terminal, none of it arrives raw; the files
themselves really have those names (the attack was real).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from outloop_cli.cli.formatting import table
from outloop_cli.safe_text import clean_text, for_terminal, one_line
from tests.cli.test_progress import _run_on_a_terminal
from tests.conftest import RepoFactory
from tests.support.e2e import PY, loop_yaml, only_run, run_cli

HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x1b[1A\u2705 goal met\x9b31m\u202eexe.txt"
RAW = ("\x1b]0;", "\x1b[2J", "\x1b[1A", "\x07", "\x9b", "\u202e")

AGENT = (
    "import pathlib; "
    f"n = {HOSTILE!r}; "
    "pathlib.Path(n).write_text('x'); "
    "d = pathlib.Path('.outloop'); "
    "(d / (n + '.yml')).write_text('on: push')"
)


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    return make_repo({".outloop/fix.yml": loop_yaml([PY, "-c", AGENT], "false")})


def _assert_clean(text: str) -> None:
    for sequence in RAW:
        assert sequence not in text, (sequence, text)


def test_hostile_file_names_reach_a_pipe_cleaned(repo: Path) -> None:
    done = run_cli(repo, "run", "fix")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "protected_path"
    # the names were really hostile: the worktree holds them as written
    assert (Path(record["worktree"]) / HOSTILE).exists()
    _assert_clean(done.stderr)
    assert "protected" in done.stderr and "goal met" in done.stderr  # shown, as text
    _assert_clean(run_cli(repo, "show", record["run_id"]).stdout)
    _assert_clean(run_cli(repo, "status").stdout)


def test_hostile_file_names_reach_a_terminal_cleaned(repo: Path) -> None:
    code, screen = _run_on_a_terminal(repo, "run", "fix")

    assert code == 1, screen
    assert "\x1b[" in screen  # the live view's own sequences, so this was a terminal
    for sequence in ("\x1b]0;", "\x1b[2J", "\x9b", "\u202e", "PWNED"):
        assert sequence not in screen, (sequence, screen)


def test_json_output_escapes_what_it_carries(repo: Path) -> None:
    done = run_cli(repo, "run", "fix", "--json")
    shown = run_cli(repo, "show", only_run(repo)["run_id"], "--json").stdout
    for text in (done.stdout, shown):
        assert text.isascii()
        _assert_clean(text)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b]0;title\x07b", "ab"),
        ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
        ("a\x1b[2J\x1b[1;1Hb", "ab"),
        ("a\x9b2Jb", "ab"),
        ("a\x1bPq#0;2\x1b\\b", "ab"),
        ("cut \x1b]0;never ends", "cut 0;never ends"),  # no ESC left: inert
        ("cut \x1b[", "cut "),
        ("a\x1b\x1b[2Jb", "ab"),
        ("tab\tand\nline", "tab\tand\nline"),
        ("cr\rover", "cr\nover"),
        ("bell\x07 nul\x00 del\x7f", "bell nul del"),
        ("\u202eevil\u202c \u2067x\u2069", "evil x"),
        ("caf\u00e9 \u2705", "caf\u00e9 \u2705"),
    ],
)
def test_for_terminal(raw: str, shown: str) -> None:
    assert for_terminal(raw) == shown
    assert "\x1b" not in for_terminal(raw + "\x1b")


def test_reports_keep_bidi_only_the_terminal_drops_it() -> None:
    assert clean_text("\u202ex") == "\u202ex"
    assert for_terminal("\u202ex") == "x"


def test_table_cells_are_one_line() -> None:
    shown = table(["name", "n"], [["a\nfake row\x1b[2J", "1"]])
    assert shown.splitlines() == ["name        n", "a fake row  1"]
    assert one_line(" a \n\t b ") == "a b"


def _cleaned_the_long_way(text: str) -> tuple[str, str]:
    """clean_text and for_terminal without their printable-ASCII shortcut."""
    from outloop_cli import safe_text

    cleaned = safe_text._ANSI_RE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    cleaned = safe_text._NOT_CHARACTER_RE.sub("\ufffd", safe_text._CONTROL_RE.sub("", cleaned))
    return cleaned, safe_text._BIDI_RE.sub("", cleaned)


@pytest.mark.parametrize("code", range(128), ids=lambda c: f"{c:#04x}")
def test_the_printable_ascii_shortcut_cleans_as_the_long_way_does(code: int) -> None:
    # every ASCII character alone, inside plain text, and after an ESC or CSI start
    char = chr(code)
    for text in (char, f"run {char} 42", f"a{char}b\x1b[{char}m", f"\x1b{char}x", f"{char}\r\n"):
        assert (clean_text(text), for_terminal(text)) == _cleaned_the_long_way(text), repr(text)
