"""Test agent in Claude Code's shape: bumps counter.txt, reports tokens and cost, and snoops.

It reads the prompt from stdin, as ``claude -p`` does, writes every ``OTEL_*``
variable it was given to ``otel-env.txt`` (committed: what an agent could
send anywhere) and quotes them in its final message, then prints Claude Code's
``result`` event with usage and cost.
"""

import json
import os
from pathlib import Path

prompt = os.sys.stdin.read()
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
seen = {name: v for name, v in os.environ.items() if name.startswith("OTEL_")}
Path("otel-env.txt").write_text("".join(f"{k}={v}\n" for k, v in sorted(seen.items())))
result = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "num_turns": 2,
    "total_cost_usd": 0.0125,
    "usage": {"input_tokens": 1000 + value, "output_tokens": 200 + value},
    "result": f"counter {value} -> {value + 1}; prompt was {prompt!r}; env {seen!r}",
    "permission_denials": [],
    "session_id": "otel-agent",
    "terminal_reason": "completed",
}
print(json.dumps(result), flush=True)
