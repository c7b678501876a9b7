"""Test agent: appends a forged line to its run's audit log (possible without a sandbox)."""

import os
import subprocess
from pathlib import Path

git_dir = Path(
    subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
).resolve()
# the user's repository is the one whose objects the agent's own git dir borrows
alternates = git_dir / "objects" / "info" / "alternates"
if alternates.exists():
    git_dir = Path(alternates.read_text().splitlines()[0]).parent
run = os.environ["OUTLOOP_RUN"]
with (git_dir / "outloop" / "runs" / run / "audit.jsonl").open("a") as log:
    log.write("nothing happened here\n")
Path("counter.txt").write_text("1\n")
