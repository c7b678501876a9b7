"""Test agent: prints 200 MB, then fixes the goal."""

import sys
from pathlib import Path

block = (b"x" * 1023 + b"\n") * 1024
for _ in range(200):
    sys.stdout.buffer.write(block)
sys.stdout.flush()
Path("counter.txt").write_text("3\n")
