"""Test agent: forks children (one escapes into its own session) that sleep, then sleeps."""

import os
import sys
import time
from pathlib import Path

pid_file = Path(sys.argv[1])
pids = [os.getpid()]
for escape in (False, True):
    child = os.fork()
    if child == 0:
        if escape:
            os.setsid()
        time.sleep(600)
        os._exit(0)
    pids.append(child)
pid_file.write_text(" ".join(map(str, pids)))
print("forking agent: children started", flush=True)
time.sleep(600)
