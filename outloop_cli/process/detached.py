"""Starting outloop itself in the background, as a user would in another terminal.

The dashboard's resume button continues a run in a runner of its own, which
must outlive neither more nor less than a runner typed in a shell: its own
session (a Ctrl-C on the dashboard's terminal does not reach it), the
environment a command typed there would get (the runner scrubs and
allow-lists for its children itself), output to a log file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from outloop_cli.errors import CouldNotRun


def start_outloop(args: Sequence[str], *, cwd: Path, log: Path) -> int:
    """Start ``outloop ARGS`` detached in ``cwd``, output appended to ``log``; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "outloop_cli", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise CouldNotRun(f"cannot start outloop in {cwd}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    return child.pid
