"""``outloop ui``: the live dashboard of every run, in a browser, on this machine only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out

_commands = CommandSet()
register = _commands.register


@_commands.command("ui")
def ui_command(
    repo: Annotated[
        list[Path] | None,
        typer.Option(
            "--repo", help="Show only this repository's runs (repeatable; default: every run)."
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on (default 0: a free one).")
    ] = 0,
    host: Annotated[
        str, typer.Option("--host", help="Loopback address to listen on (127.0.0.1 or ::1).")
    ] = "127.0.0.1",
) -> int:
    """Serve a live dashboard of runs: open the printed URL in your browser.

    The URL's token opens a session in each browser that opens it, for as long as
    this dashboard runs (as Jupyter's does): treat the URL as a password. A new
    start prints a new token.
    """
    from outloop_cli.commands.ui import serve_ui

    def ready(url: str) -> None:
        out(url)
        err("dashboard running; open the URL above in a browser. Ctrl-C stops it.")

    serve_ui(Path.cwd(), list(repo or []), host=host, port=port, on_ready=ready)
    err("dashboard stopped")
    return 0
