"""Test agent: rewrites its run's records the way a careful attacker without a sandbox would.

It edits the first event of the audit log (``run_started``: the base commit
and the agent), recomputes every ``prev`` link after it, keeps the lines'
other bytes, and moves ``run.json``'s audit head and base commit to match,
so the plain hash chain, the record and the log all agree again. It cannot
recompute a MAC made with a key it never saw; it keeps the old ones.
Argument: the commit to claim as the base.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

claimed_base = sys.argv[1]
run = os.environ["OUTLOOP_RUN"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def run_dirs() -> list[Path]:
    """The run's directory, wherever this layout keeps the user's git dir."""
    found = []
    common = Path(git("rev-parse", "--git-common-dir")).resolve()
    candidates = [common]
    alternates = common / "objects" / "info" / "alternates"
    if alternates.exists():
        for line in alternates.read_text().splitlines():
            if line.strip():
                candidates.append(Path(line.strip()).resolve().parent)
    for git_dir in candidates:
        path = git_dir / "outloop" / "runs" / run
        if (path / "audit.jsonl").exists():
            found.append(path)
    return found


(run_dir,) = run_dirs()
audit = run_dir / "audit.jsonl"
lines = audit.read_bytes().splitlines()
rewritten = []
prev = "0" * 64
for raw in lines:
    text = raw.decode()
    entry = json.loads(text)
    if entry.get("event") == "run_started":
        old_base, old_agent = entry["base"], entry["agent"]
        text = text.replace(json.dumps(old_base), json.dumps(claimed_base), 1)
        text = text.replace(json.dumps(old_agent), json.dumps("forged-agent"), 1)
    # the link to the line before, recomputed
    old_prev = json.loads(text)["prev"]
    text = text.replace(f'"prev": "{old_prev}"', f'"prev": "{prev}"', 1)
    rewritten.append(text.encode())
    prev = hashlib.sha256(text.encode()).hexdigest()
audit.write_bytes(b"\n".join(rewritten) + b"\n")
record_path = run_dir / "run.json"
record = json.loads(record_path.read_text())
record["audit_head"] = {"seq": len(rewritten), "hash": prev}
record["base_commit"] = claimed_base
record_path.write_text(json.dumps(record, indent=2))
Path("forged.txt").write_text("records rewritten\n")
