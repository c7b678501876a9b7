"""Test agent: bumps counter.txt; on turn N it moves the run's branch in the user's repository.

``branch_mover_agent.py USER_REPO N``: someone else moving the branch outloop
imports into (here the agent of an unsandboxed run, standing in for a person
or a script). outloop's import is a compare and swap, so it must refuse to
move the branch from where that someone left it.
"""

import os
import subprocess
import sys
from pathlib import Path

user_repo, turn = sys.argv[1], int(sys.argv[2])
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
if int(os.environ["OUTLOOP_ITERATION"]) == turn:
    branch = f"refs/heads/outloop/{os.environ['OUTLOOP_LOOP']}/{os.environ['OUTLOOP_RUN']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    base = subprocess.run(
        ["git", "-C", user_repo, "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    subprocess.run(["git", "-C", user_repo, "update-ref", branch, base], check=True, env=env)
    print(f"moved {branch} to {base}")
