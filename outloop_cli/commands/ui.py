"""``outloop ui``: serve the live dashboard until Ctrl-C (or SIGTERM), then return."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from outloop_cli.errors import UsageError
from outloop_cli.git.repo import discover
from outloop_cli.ui.server import check_bind_address, serve
from outloop_cli.ui.sources import RunSource


def serve_ui(
    cwd: Path, repos: list[Path], *, host: str, port: int, on_ready: Callable[[str], None]
) -> None:
    """Serve every run on the machine (only those of ``repos`` when given) on a loopback address.

    Started inside a repository, its runs are read from it too: runs older than the
    machine-wide index are not in it.
    """
    bind = check_bind_address(host)
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number", hint="0..65535; 0 picks a free one")
    if repos:
        source = RunSource(repos, only=True)
    else:
        source = RunSource([cwd] if _in_repository(cwd) else [], only=False)
    asyncio.run(_main(source, bind, port, on_ready))


def _in_repository(cwd: Path) -> bool:
    try:
        discover(cwd)
    except UsageError:
        return False
    return True


async def _main(source: RunSource, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(source, host=host, port=port, on_ready=on_ready, stop=stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
