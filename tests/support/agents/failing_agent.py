"""Test agent: writes a file, then exits non-zero."""

import sys
from pathlib import Path

n = len(list(Path().glob("attempt-*.txt")))
Path(f"attempt-{n}.txt").write_text("tried\n")
print("failing agent: giving up", file=sys.stderr)
sys.exit(1)
