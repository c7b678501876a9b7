"""Test agent for the dashboard: speaks Claude Code's stream-json, one fixed step per turn.

Each turn bumps counter.txt and writes notes/turn-N.md, then reports cost, tokens and a
final message the way `claude -p --output-format stream-json` does. With `--gate DIR` it
waits, after its work and before reporting, until `release-N` exists there, so a test
decides when each iteration ends. With `--leak FILE` it also puts that file's content in
its final message and its output (a leak the runner must mask). The claude preset's own
flags follow these and are ignored.
"""

import json
import sys
import time
from pathlib import Path


def option(name: str) -> str | None:
    if name in sys.argv[:-1]:
        return sys.argv[sys.argv.index(name) + 1]
    return None


gate, leak = option("--gate"), option("--leak")
prompt = sys.stdin.read()
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
turn = value + 1
counter.write_text(f"{turn}\n")
notes = Path("notes")
notes.mkdir(exist_ok=True)
(notes / f"turn-{turn}.md").write_text(f"# turn {turn}\n\nbumped the counter from {value}\n")
steer = "operator" in prompt.lower()
message = f"Turn {turn}: counter is now {turn}." + (" Read the operator's note." if steer else "")
if leak:
    found = Path(leak).read_text().strip()
    print(f"found this: {found}", flush=True)
    message += f" I found {found}"
if gate:
    release = Path(gate) / f"release-{turn}"
    (Path(gate) / f"waiting-{turn}").write_text("")
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
usage = {"input_tokens": 1000 + turn, "output_tokens": 200, "cache_read_input_tokens": 0}
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s", "model": "m"}))
print(
    json.dumps(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": 2,
            "total_cost_usd": 0.01 * turn,
            "usage": usage,
            "result": message,
            "permission_denials": [],
            "session_id": "s",
            "terminal_reason": "completed",
        }
    ),
    flush=True,
)
