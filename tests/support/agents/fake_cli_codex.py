"""Fake `codex exec --json ... -`: Codex 0.171's real JSONL events.

FAKE_CLI_MODE: ok | auth | rate_limit | crash | malformed. Records its argv
(one per line) in $CODEX_HOME/argv.txt so tests can check the command line.
"""

import json
import os
import sys
from pathlib import Path

mode = os.environ.get("FAKE_CLI_MODE", "ok")
home = Path(os.environ["CODEX_HOME"])
(home / "argv.txt").write_text("\n".join(sys.argv[1:]))
prompt = sys.stdin.read()
thread = "01a21de8-5156-7902-b480-08953b2af3bb"
session_dir = home / "sessions" / "2026" / "11" / "27"
session_dir.mkdir(parents=True, exist_ok=True)
(session_dir / f"rollout-2026-11-27T16-48-15-{thread}.jsonl").write_text(
    json.dumps({"type": "session_meta", "payload": {"id": thread, "model_provider": "outloop"}})
    + "\n"
    + json.dumps(
        {"type": "turn_context", "payload": {"cwd": str(Path.cwd()), "model": "gpt-5-codex"}}
    )
    + "\n"
)


def emit(event):
    print(json.dumps(event), flush=True)


if mode == "malformed":
    print("codex: something went wrong before any event")
    sys.exit(0)
emit({"type": "thread.started", "thread_id": thread})
emit({"type": "turn.started"})
if mode == "crash":
    sys.stdout.flush()
    os.kill(os.getpid(), 9)
if mode in ("auth", "rate_limit"):
    status = (
        "401 Unauthorized: Incorrect API key provided."
        if mode == "auth"
        else "429 Too Many Requests: Rate limit reached for requests"
    )
    message = f"unexpected status {status}, url: http://127.0.0.1:1/v1/responses"
    emit({"type": "error", "message": f"Reconnecting... 1/5 ({message})"})
    emit({"type": "error", "message": message})
    emit({"type": "turn.failed", "error": {"message": message}})
    sys.exit(1)
emit(
    {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "bash -lc 'true'",
            "aggregated_output": "",
            "exit_code": 0,
            "status": "completed",
        },
    }
)
emit(
    {
        "type": "item.completed",
        "item": {"id": "item_2", "type": "agent_message", "text": f"done ({len(prompt)})"},
    }
)
emit(
    {
        "type": "turn.completed",
        "usage": {
            "input_tokens": 10000,
            "cached_input_tokens": 4000,
            "output_tokens": 500,
            "reasoning_output_tokens": 0,
        },
    }
)
