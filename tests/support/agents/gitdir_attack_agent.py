"""Attacker agent: changes the user's repository from inside the run.

It finds the repository as an attacker would: the git dir whose objects its
own git dir borrows (``objects/info/alternates``), or its own git's common dir
(a `git worktree add` checkout shares the user's).

Moves, deletes and prunes the user's refs, reflogs and stash, adds an
alternate and an attributes file, and plants a hook and an fsmonitor in a
submodule's git dir (``modules/sub``), each of which the user's next git
command in their checkout would act on. Prints one JSON line: what git or the
file system let through (the test checks the repository from outside too).
"""

import json
import subprocess
import sys
from pathlib import Path

own = Path(
    subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
).resolve()
try:
    user = Path((own / "objects" / "info" / "alternates").read_text().splitlines()[0]).parent
except (OSError, IndexError):
    user = own
stash = subprocess.run(
    ["git", f"--git-dir={user}", "rev-parse", "--verify", "-q", "refs/stash"],
    capture_output=True,
    text=True,
).stdout.strip()


def git(*args: str) -> bool:
    done = subprocess.run(["git", f"--git-dir={user}", *args], capture_output=True, text=True)
    if done.returncode:
        print(args[0], done.stderr, file=sys.stderr)
    return done.returncode == 0


def write(path: Path, text: str) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(text)
        return True
    except OSError:
        return False


found = {
    "move_branch": git("update-ref", "refs/heads/main", "refs/heads/feature"),
    "delete_branch": git("update-ref", "-d", "refs/heads/feature"),
    "move_tag": git("update-ref", "refs/tags/v1", "HEAD~0"),
    "drop_stash": git("update-ref", "-d", "refs/stash"),
    "expire_reflogs": git("reflog", "expire", "--expire=now", "--expire-unreachable=now", "--all"),
    # pruning "works" whenever git exits 0; it landed when the stash commit is gone
    "prune": git("prune", "--expire=now") and not git("cat-file", "-e", stash or "none"),
    "alternates": write(user / "objects" / "info" / "alternates", "/tmp/planted-objects\n"),
    "attributes": write(user / "info" / "attributes", "* filter=planted\n"),
    "submodule_hook": write(user / "modules" / "sub" / "hooks" / "post-checkout", "#!/bin/sh\n"),
    "submodule_config": write(
        user / "modules" / "sub" / "config", "[core]\n\tfsmonitor = /tmp/planted.sh\n"
    ),
}
print(json.dumps(found), flush=True)
