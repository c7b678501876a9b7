"""CLI commands: ``audit verify`` and ``audit show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_json

if TYPE_CHECKING:
    from outloop_cli.commands.audit import RunVerification
    from outloop_cli.store.audit import AuditLine

_commands = CommandSet()
register = _commands.register

audit_group = _commands.group("audit", help="Check and read runs' hash-chained audit logs.")

# fields every event has; `show` prints the rest as key=value
_COMMON_FIELDS = ("seq", "time", "run", "event", "prev", "mac")
_MAX_VALUE = 80


@audit_group.command("verify")
def verify_command(
    run: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Run id or unique prefix (default: every run of this repository)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per run on stdout.")
    ] = False,
) -> int:
    """Check audit chains; exit 1 naming the first bad line."""
    from outloop_cli.commands.audit import verify_runs

    results = verify_runs(Path.cwd(), run)
    if not results:
        err("no runs in this repository yet")
        return 0
    for verification in results:
        if as_json:
            out_json(verification.as_json())
        else:
            out(_verdict(verification))
            for warning in verification.warnings:
                err(f"  warning: {warning}")
    broken = [v for v in results if not v.ok]
    if broken and len(results) > 1:
        err(f"{len(broken)} of {len(results)} audit log(s) failed verification")
    return 1 if broken else 0


def _verdict(verification: RunVerification) -> str:
    result = verification.result
    if not result.ok:
        where = f"{verification.audit_path}:{result.bad_line}" if result.bad_line else ""
        text = f"FAILED {verification.run_id}: {result.reason}"
        return text + (f"\n  at {where}" if where else "")
    head = result.head
    against = ", ".join(_shorten_sources(verification.checked_against)) or "nothing else"
    tip = f"head {head.seq}:{head.hash[:12]}" if head else "empty"
    return f"ok {verification.run_id}: {result.lines} event(s), {tip}, matches {against}"


def _shorten_sources(sources: tuple[str, ...]) -> list[str]:
    commits = [s for s in sources if s.startswith("commit ")]
    others = [s for s in sources if not s.startswith("commit ")]
    if commits:
        others.append(f"{len(commits)} commit trailer(s)")
    return others


@audit_group.command("show")
def show_command(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The events as JSON lines on stdout.")
    ] = False,
) -> int:
    """Print a run's audit events: time, sequence, event and its fields."""
    from outloop_cli.commands.audit import show_events

    view = show_events(Path.cwd(), run)
    if not as_json:
        err(f"run {view.run_id}: {len(view.lines)} event(s) from {view.audit_path}")
    for line in view.lines:
        if as_json:
            if line.entry is not None:
                out_json(line.entry)
        else:
            out(_render(line))
    verification = view.verification
    if verification is not None and not verification.ok:
        err(
            f"warning: this log fails verification: {verification.result.reason} "
            f"(see `outloop audit verify {view.run_id}`)"
        )
    return 0


def _render(line: AuditLine) -> str:
    entry = line.entry
    if entry is None:
        return f"line {line.number}: {line.problem} ({len(line.raw)} bytes)"
    when = str(entry.get("time", "?")).replace("T", " ").removesuffix("+00:00")
    seq = entry.get("seq", "?")
    event = str(entry.get("event", "?"))
    fields = [
        f"{key}={_value(value)}"
        for key, value in entry.items()
        if key not in _COMMON_FIELDS and value is not None
    ]
    return f"{when}  #{seq:<4} {event:<20} {' '.join(fields)}".rstrip()


def _value(value: Any) -> str:
    if isinstance(value, str):
        text = value[:10] if _looks_like_sha(value) else value
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list):
        text = ",".join(_value(v) for v in value)
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 1] + "…"
    return json.dumps(text, ensure_ascii=False) if " " in text or not text else text


def _looks_like_sha(value: str) -> bool:
    return len(value) in (40, 64) and all(ch in "0123456789abcdef" for ch in value)
