"""Attacker agent: leaves a daemon inside its sandbox that goes on changing the worktree.

The daemon (double fork, new session, stdio closed) rewrites ``heartbeat.txt``
in the worktree every 20 ms for as long as it lives: were it still running
when the goal checks the agent's work, or when outloop commits it, what was
checked would not be what is kept. The agent itself writes counter.txt and
exits 0 at once, as a well-behaved agent would.
"""

import os
import time
from pathlib import Path

here = Path.cwd()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        count = 0
        while True:
            count += 1
            tmp = here / ".heartbeat.tmp"
            tmp.write_text(str(count))
            tmp.replace(here / "heartbeat.txt")
            time.sleep(0.02)
    os._exit(0)
os.wait()
while not (here / "heartbeat.txt").exists():
    time.sleep(0.01)
(here / "counter.txt").write_text("1\n")
print("fixed the counter (and left a daemon behind)")
