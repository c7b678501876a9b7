"""``outloop ui``: serve the live dashboard until Ctrl-C (or SIGTERM), then return."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from outloop_cli.ui.server import check_bind_address, serve
from outloop_cli.ui.sources import RunSource


def serve_ui(
    cwd: Path, repos: list[Path], *, host: str, port: int, on_ready: Callable[[str], None]
) -> None:
    """Serve the runs of ``repos`` (the repository at ``cwd`` when none) on a loopback address."""
    bind = check_bind_address(host)
    if not 0 <= port <= 65535:
        from outloop_cli.errors import UsageError

        raise UsageError(f"--port {port} is not a port number", hint="0..65535; 0 picks a free one")
    source = RunSource(repos or [cwd])
    asyncio.run(_main(source, bind, port, on_ready))


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
