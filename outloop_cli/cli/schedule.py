"""CLI commands: ``schedule install|list|remove`` — loops' ``on.schedule`` as systemd timers or cron."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_json

_commands = CommandSet()
register = _commands.register

schedule_group = _commands.group(
    "schedule",
    help="Run loops' `on.schedule` on this machine: systemd user timers, or cron without systemd.",
)

_LOOPS = typer.Argument(help="Only these loops (default: every loop with an `on.schedule`).")
_BACKEND = typer.Option(
    "--backend",
    help="systemd or cron (default: systemd where it runs as PID 1, else cron).",
)


def _backend(value: str | None) -> str | None:
    from outloop_cli.commands.schedule import BACKENDS
    from outloop_cli.errors import UsageError

    if value is not None and value not in BACKENDS:
        raise UsageError(f"--backend {value!r}: not one of {', '.join(BACKENDS)}")
    return value


@schedule_group.command("install")
def install_command(
    loops: Annotated[Optional[list[str]], _LOOPS] = None,  # noqa: UP045
    backend: Annotated[Optional[str], _BACKEND] = None,  # noqa: UP045
) -> int:
    """Install a timer (a .service and a .timer with Persistent=true under
    $XDG_CONFIG_HOME/systemd/user/) or crontab lines per loop, each running
    `outloop run LOOP --trigger schedule` in this repository.

    A start while the loop is still running is skipped and recorded, and a fire
    time runs at most once, so a timer that catches up after sleep runs once.
    """
    from outloop_cli.commands.schedule import install

    outcome = install(Path.cwd(), loops or [], _backend(backend))
    for item in outcome.entries:
        out(f"{item.entry.loop}: {item.backend} {item.entry.unit}")
        for path in item.files:
            out(f"  wrote {path}")
        out("  next: " + ", ".join(item.next_fires))
    for note in outcome.notes:
        err(f"note: {note}")
    return 0


@schedule_group.command("list")
def list_command(
    backend: Annotated[Optional[str], _BACKEND] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """List the schedules outloop installed (every repository), with their next fire times (UTC)."""
    from outloop_cli.commands.schedule import installed

    outcome = installed(_backend(backend))
    if as_json:
        out_json(
            [
                {
                    "repo": i.entry.repo,
                    "loop": i.entry.loop,
                    "unit": i.entry.unit,
                    "backend": i.backend,
                    "schedule": list(i.entry.schedule),
                    "timezone": i.entry.timezone,
                    "next": list(i.next_fires),
                }
                for i in outcome.entries
            ]
        )
        return 0
    if not outcome.entries:
        err(f"no outloop schedules installed ({outcome.backend})")
    for item in outcome.entries:
        zone = f" ({item.entry.timezone})" if item.entry.timezone else ""
        out(f"{item.entry.loop}  {item.entry.repo}  [{item.backend} {item.entry.unit}]")
        out(f"  schedule: {', '.join(item.entry.schedule)}{zone}")
        out("  next: " + ", ".join(item.next_fires))
    return 0


@schedule_group.command("remove")
def remove_command(
    loops: Annotated[Optional[list[str]], _LOOPS] = None,  # noqa: UP045
    backend: Annotated[Optional[str], _BACKEND] = None,  # noqa: UP045
) -> int:
    """Remove this repository's schedules (or only those of the named loops)."""
    from outloop_cli.commands.schedule import remove

    outcome = remove(Path.cwd(), loops or [], _backend(backend))
    if not outcome.entries:
        err("nothing to remove: no schedule of this repository is installed")
    for item in outcome.entries:
        out(f"removed {item.entry.loop} ({item.backend} {item.entry.unit})")
    return 0
