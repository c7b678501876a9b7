"""``outloop --help`` is written without typer, and is byte for byte the page typer renders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer.main

from outloop_cli.cli.app import app
from outloop_cli.cli.root_help import render, short_help


def typer_page(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: int
) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    command = typer.main.get_command(app)
    with pytest.raises(SystemExit) as exited:
        command.main(["--help"], prog_name="outloop")
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "columns", [1, 30, 49, 50, 51, 52, 60, 64, 70, 77, 78, 79, 80, 81, 120, 300]
)
def test_the_page_is_typers_at_every_width(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: int
) -> None:
    assert render(columns) == typer_page(monkeypatch, capsys, columns)


def test_summaries_are_shortened_as_click_shortens_them() -> None:
    from typer._click.utils import make_default_short_help

    texts = [
        "One sentence.",
        "A sentence that is long enough to be cut somewhere in the middle of it.",
        "Exactly twenty chars",
        "word " * 30,
        "Ends here. And goes on after the first sentence",
        "",
    ]
    for text in texts:
        for limit in range(1, 80):
            assert short_help(text, limit) == make_default_short_help(text, limit), (text, limit)


def test_outloop_help_prints_the_page_without_importing_typer() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    code = (
        "import sys\n"
        "from outloop_cli.main import main\n"
        "main(['--help'])\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('typer', 'click', 'yaml', 'pydantic'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == render(80)
    assert done.stderr == "[]"
    # the console script answers the same
    script = subprocess.run(
        [sys.executable, "-m", "outloop_cli", "--help"], env=env, capture_output=True, text=True
    )
    assert script.stdout == render(80)
