"""Test agent: bumps counter.txt each turn; on its first turn it also hangs.

The first turn writes MARKER (its pid) and sleeps, to be stopped, interrupted or
killed; later turns (after a resume) just bump the counter.
"""

import os
import sys
import time
from pathlib import Path

marker = Path(sys.argv[1])
sleep = float(sys.argv[2]) if len(sys.argv) > 2 else 600.0
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
print(f"once-sleepy agent: {value} -> {value + 1}", flush=True)
if not marker.exists():
    # whole or not at all: the test reads the pid as soon as the marker exists, and
    # write_text creates the file empty before it writes
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(str(os.getpid()))
    partial.replace(marker)
    time.sleep(sleep)
