"""Test agent speaking Claude Code's stream-json: bumps counter.txt and reports what it cost.

Argument: the cost in US dollars it reports for each turn (the preset's own flags follow).
It reads the prompt from stdin, as `claude -p` does.
"""

import json
import sys
from pathlib import Path

cost = float(sys.argv[1])
prompt = sys.stdin.read()
counter = Path("counter.txt")
value = int(counter.read_text()) if counter.exists() else 0
counter.write_text(f"{value + 1}\n")
for event in (
    {"type": "system", "subtype": "init", "session_id": "s-1", "model": "claude-sonnet-4-5"},
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "num_turns": 1,
        "total_cost_usd": cost,
        "usage": {"input_tokens": 100, "output_tokens": 20},
        "result": f"counter {value} -> {value + 1}",
        "session_id": "s-1",
        "api_error_status": None,
    },
):
    print(json.dumps(event), flush=True)
