"""Test agent: appends a forged line to its run's audit log (possible without a sandbox)."""

import os
import subprocess
from pathlib import Path

git_dir = Path(
    subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
).resolve()
run = os.environ["OUTLOOP_RUN"]
with (git_dir / "outloop" / "runs" / run / "audit.jsonl").open("a") as log:
    log.write("nothing happened here\n")
Path("counter.txt").write_text("1\n")
