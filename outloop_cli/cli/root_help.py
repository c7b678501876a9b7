"""``outloop --help`` without typer: the root page written from ``cli/verbs.py`` alone.

Importing typer costs more than starting Python, and the root page needs
nothing of it: its lines are the root help, the ``--version`` option and one
summary per verb. This module lays them out as click's ``HelpFormatter``
would for the root group (same width rule, same wrapping, same shortened
summaries), and ``tests/cli/test_root_help.py`` holds it byte-identical to
the page typer renders, at every width.
"""

from __future__ import annotations

import os
import sys
import textwrap

from outloop_cli.cli.verbs import ROOT_HELP, VERBS, VERSION_HELP, help_order

USAGE = "Usage: outloop [OPTIONS] COMMAND [ARGS]..."
OPTIONS = (("-V, --version", VERSION_HELP), ("--help", "Show this message and exit."))
# click: at most 80 columns, 2 of them left free, never under 50
_MAX_WIDTH = 80


def terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` answers, without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def help_width(columns: int) -> int:
    return max(min(columns, _MAX_WIDTH) - 2, 50)


def short_help(text: str, max_length: int) -> str:
    """click's ``make_default_short_help``: the first sentence, or words up to ``...``."""
    words = text.split("\n\n", 1)[0].split()
    if not words:
        return ""
    total = 0
    last = len(words) - 1
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > max_length:
            break
        if word[-1] == ".":
            return " ".join(words[: i + 1])
        if total == max_length and i != last:
            break
    else:
        return " ".join(words)
    total += len("...")
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= max_length:
            break
        i -= 1
    return " ".join(words[:i]) + "..."


def _wrap(text: str, width: int, indent: str = "") -> str:
    wrapper = textwrap.TextWrapper(
        width, initial_indent=indent, subsequent_indent=indent, replace_whitespace=False
    )
    return wrapper.fill(" ".join(text.split("\n")))


def _definitions(rows: list[tuple[str, str]], width: int, indent: int = 2) -> list[str]:
    """click's ``write_dl`` (first column at most 30 wide, 2 spaces between)."""
    first_col = min(max(len(first) for first, _ in rows), 30) + 2
    lines = []
    for first, second in rows:
        line = " " * indent + first
        if len(first) <= first_col - 2:
            line += " " * (first_col - len(first))
        else:
            lines.append(line)
            line = " " * (first_col + indent)
        wrapped = _wrap(second, max(width - first_col - 2, 10)).splitlines()
        lines.append(line + (wrapped[0] if wrapped else ""))
        lines += [" " * (first_col + indent) + rest for rest in wrapped[1:]]
    return lines


def render(columns: int | None = None) -> str:
    """The root help page, as ``outloop --help`` prints it (ends with a newline)."""
    width = help_width(terminal_columns() if columns is None else columns)
    shown = [verb for verb in help_order() if not VERBS[verb].hidden]
    limit = width - 6 - max(len(verb) for verb in shown)
    commands = [(verb, short_help(VERBS[verb].summary, limit)) for verb in shown]
    lines = [
        _usage(width),
        "",
        _wrap(ROOT_HELP, width, "  "),
        "",
        "Options:",
        *_definitions(list(OPTIONS), width),
        "",
        "Commands:",
        *_definitions(commands, width),
    ]
    return "\n".join(lines) + "\n"


def _usage(width: int) -> str:
    prefix = "Usage: outloop "
    args = USAGE[len(prefix) :]
    wrapper = textwrap.TextWrapper(
        width, initial_indent=prefix, subsequent_indent=" " * len(prefix), replace_whitespace=False
    )
    return wrapper.fill(args)
