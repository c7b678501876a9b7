"""Test agent: probes what it can reach and writes the findings to probe.json (then committed).

Argument: a canary string the test planted in places the agent must not see,
reversed, so the agent's own command line does not contain it.
"""

import json
import os
import sys
from pathlib import Path

canary = sys.argv[1][::-1]
found: dict[str, object] = {}

# other processes: environ and cmdline of every pid we can see
leaked = []
pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]
for pid in pids:
    for name in ("environ", "cmdline"):
        try:
            if canary.encode() in Path(f"/proc/{pid}/{name}").read_bytes():
                leaked.append(f"{pid}/{name}")
        except OSError:
            pass
found["visible_pids"] = len(pids)
found["proc_leaks"] = leaked
home = Path(os.environ.get("HOME", "/nonexistent"))
found["home_entries"] = sorted(p.name for p in home.iterdir()) if home.is_dir() else None
found["canary_in_env"] = canary in "\0".join(f"{k}={v}" for k, v in os.environ.items())


def try_write(path: str) -> bool:
    try:
        Path(path).write_text("planted by the agent\n")
        return True
    except OSError:
        return False


own_git_dir = Path(os.popen("git rev-parse --git-common-dir").read().strip()).resolve()
# the user's repository: the one whose objects the agent's git dir borrows
try:
    alternates = (own_git_dir / "objects" / "info" / "alternates").read_text()
    git_dir = Path(alternates.splitlines()[0]).parent
except (OSError, IndexError):
    git_dir = own_git_dir
found["hook_written"] = try_write(str(git_dir / "hooks" / "post-checkout"))
audit = sorted((git_dir / "outloop" / "runs").glob("*/audit.jsonl"))


def can_append(path: Path) -> bool:
    # opening for append is enough to tell; writing nothing keeps the log intact
    try:
        with path.open("ab") as handle:
            handle.write(b"")
        return True
    except OSError:
        return False


found["audit_writable"] = bool(audit) and can_append(audit[0])
found["worktree_writable"] = try_write("probe-ok.txt")
Path("probe.json").write_text(json.dumps(found, indent=1))
print(json.dumps(found))
