"""Test agent: records when it starts and ends, and waits until WANT agents have started.

Run in several repositories at once (`--jobs`), each writes DIR/NAME.start and then
waits (up to 60 s) for WANT start files: it only gets past that while the other runs'
agents are running too. The times it writes let a test see which turns overlapped.
Then it bumps counter.txt, so a counter goal is met.
"""

import sys
import time
from pathlib import Path

shared, name, want = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
start = time.time()
(shared / f"{name}.start.tmp").write_text(repr(start))
(shared / f"{name}.start.tmp").replace(shared / f"{name}.start")
deadline = time.monotonic() + 60
while len(list(shared.glob("*.start"))) < want and time.monotonic() < deadline:
    time.sleep(0.05)
met = len(list(shared.glob("*.start"))) >= want
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
(shared / f"{name}.end").write_text(f"{time.time()!r} {'met' if met else 'alone'}\n")
print(f"rendezvous agent {name}: {'met the others' if met else 'ran alone'}")
