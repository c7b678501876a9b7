"""Test agent: keeps the prompt and the event file it got (in the worktree), bumps counter.txt.

Run as ``event_agent.py {prompt_file} {event_file}``; it obeys nothing it reads.
"""

import sys
from pathlib import Path

counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
Path("seen_prompt.txt").write_text(Path(sys.argv[1]).read_text())
event = Path(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
Path("seen_event.json").write_text(event.read_text() if event else "")
print(f"event agent: {value} -> {value + 1}")
