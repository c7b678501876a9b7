"""Test agent: bumps counter.txt by one each turn (and records the prompt it got)."""

import sys
from pathlib import Path

counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
Path("last_prompt.txt").write_text(Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else "")
print(f"counter agent: {value} -> {value + 1}")
