"""Test agent: plants code for outloop's (or the user's) next git command to run.

Argument: what to plant — fsmonitor | hook | global | filter. The planted program
writes the environment it sees to PWNED (an absolute path, the second argument).
The third argument is the git dir to plant it in: a path, ``run`` for outloop's
own git dir of this run (next to its records), or ``own`` (the default) for the
one the worktree's ``.git`` names, which is the agent's own.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

what, pwned = sys.argv[1], sys.argv[2]
script = Path(pwned + ".sh")
script.write_text(f"#!/bin/sh\nenv > {pwned}\ncat\n")
script.chmod(script.stat().st_mode | stat.S_IEXEC)
Path("innocent.txt").write_text("a change to commit\n")
where = sys.argv[3] if len(sys.argv) > 3 else "own"
own = Path(
    subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
).resolve()
if where == "own":
    git_dir = own
elif where == "run":
    # outloop's git dir for the run sits beside the agent's, in the run's directory
    git_dir = own.parent / "git"
else:
    git_dir = Path(where)
config = ["git", "config", "--file", str(git_dir / "config")]
if what == "fsmonitor":
    subprocess.run([*config, "core.fsmonitor", str(script)], check=True)
elif what == "filter":
    subprocess.run([*config, "filter.evil.clean", str(script)], check=True)
    Path(".gitattributes").write_text("*.txt filter=evil\n")
elif what == "global":
    home = Path(os.environ["HOME"])
    with (home / ".gitconfig").open("a") as handle:
        handle.write(f"[core]\n\tfsmonitor = {script}\n")
elif what == "hook":
    hook = git_dir / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\nenv > {pwned}\n")
    hook.chmod(0o755)
print("planted", what)
