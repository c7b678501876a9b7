"""Text shared by the commands' output: tables, durations, money and ages.

A value that is not known prints as ``-``, so every column of a table lines up.
"""

from __future__ import annotations

from collections.abc import Sequence

from outloop_cli.safe_text import one_line


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    # a cell is one line whatever it holds: a name with a newline must not fake a row
    header = [one_line(str(cell)) for cell in header]
    rows = [[one_line(str(cell)) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def money(cost: float | None) -> str:
    return f"${cost:.2f}" if cost is not None else "-"


def duration(value: float | None) -> str:
    from outloop_cli.timefmt import format_seconds

    return format_seconds(value) if value is not None else "-"


def ago(age: float | None) -> str:
    if age is None:
        return "-"
    if age < 60:
        return f"{int(age)}s ago"
    if age < 3600:
        return f"{int(age // 60)}m ago"
    if age < 86400 * 2:
        return f"{int(age // 3600)}h ago"
    return f"{int(age // 86400)}d ago"
