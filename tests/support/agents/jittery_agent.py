"""Test agent for the crash harness: bumps counter.txt, writes a few files, takes a random while."""

import os
import random
import time
from pathlib import Path

counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
Path("work").mkdir(exist_ok=True)
for i in range(3):
    Path(f"work/turn-{value + 1}-{i}.txt").write_text(os.urandom(64).hex())
    time.sleep(random.uniform(0, 0.08))
counter.write_text(f"{value + 1}\n")
print(f"jittery agent: {value} -> {value + 1}", flush=True)
