"""Attacker agent: leaves a daemon behind that outlives the runner, then waits to be killed.

The daemon (double fork, new session, stdio closed) writes an ever-growing
count to ``heartbeat.txt`` in the worktree and its pid to ``daemon.pid``, for
as long as it lives: with its own copy of the worktree and whatever the
agent could reach, it would keep working after a crashed runner.
"""

import os
import sys
import time
from pathlib import Path

here = Path.cwd()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        (here / "daemon.pid").write_text(str(os.getpid()))
        count = 0
        while True:
            count += 1
            tmp = here / ".heartbeat.tmp"
            tmp.write_text(str(count))
            tmp.replace(here / "heartbeat.txt")
            time.sleep(0.05)
    os._exit(0)
time.sleep(600)
sys.exit(0)
