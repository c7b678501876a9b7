"""Attacker agent: as root, unmount a read-only bind of the repository and write through it.

The directory is argv[1] (the user's object store, which the run's sandbox
binds read-only), else the hooks of the common dir the worktree's ``.git``
file names (a `git worktree add` checkout, the older layout).

Also tries to win capabilities back (``unshare -r``) and to remount the bind
read-write. Prints one JSON line: what worked. Used both by a real `outloop
run` and, as the control, under a bubblewrap view without the user namespace.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

if len(sys.argv) > 1:
    hooks = Path(sys.argv[1])
else:
    gitfile = Path(".git").read_text().split("gitdir:", 1)[1].strip()
    hooks = Path(gitfile).parent.parent / "hooks"


def attempt(*argv: str) -> bool:
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=20).returncode == 0
    except OSError:
        return False


found = {
    "euid": os.geteuid(),
    "umount": attempt("umount", str(hooks)),
    "remount_rw": attempt("mount", "-o", "remount,rw,bind", str(hooks)),
    "unshare_root": attempt("unshare", "-r", "true"),
    "hook_written": False,
}
try:
    hook = hooks / "post-checkout"
    hook.write_text("#!/bin/sh\necho pwned\n")
    found["hook_written"] = True
except OSError:
    pass
print(json.dumps(found), flush=True)
sys.exit(0)
