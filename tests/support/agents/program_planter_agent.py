"""Plants a program outloop itself looks up on PATH, in a directory the loop lets it write.

    program_planter_agent.py DIRECTORY NAME REAL MARKER

Writes DIRECTORY/NAME: a shell script that notes where it ran in MARKER (a file
outside the sandbox's view, so only a start outside the sandbox can write it) and
then runs REAL with its arguments, so the run goes on as if nothing happened. If
outloop finds NAME (its git, its bubblewrap) on a PATH that holds DIRECTORY, the
agent's code runs outside the sandbox, as the user, on outloop's next call.
"""

from __future__ import annotations

import sys
from pathlib import Path

directory, name, real, marker = sys.argv[1:5]
planted = Path(directory) / name
planted.parent.mkdir(parents=True, exist_ok=True)
planted.write_text(
    f'#!/bin/sh\necho "{name} planted by the agent ran outside the sandbox" >> "{marker}"\n'
    f'exec "{real}" "$@"\n'
)
planted.chmod(0o755)
Path("counter.txt").write_text("1\n")
print(f"planted {planted}")
