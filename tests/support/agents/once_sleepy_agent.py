"""Test agent: bumps counter.txt each turn; on its first turn it also hangs.

The first turn writes MARKER (its pid) and sleeps, to be stopped, interrupted or
killed; later turns (after a resume) just bump the counter. With ``--headless``
the first turn sleeps in a second thread and ends its main thread
(``pthread_exit``): its /proc entry then shows no environment, command line or
working directory, only its threads do.
"""

import os
import sys
import time
from pathlib import Path

headless = "--headless" in sys.argv
args = [a for a in sys.argv[1:] if a != "--headless"]
marker = Path(args[0])
sleep = float(args[1]) if len(args) > 1 else 600.0
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
    if headless:
        import ctypes
        import threading

        threading.Thread(target=time.sleep, args=(sleep,)).start()
        ctypes.CDLL(None).pthread_exit(None)
    time.sleep(sleep)
