"""Fake `claude -p --output-format stream-json --verbose`: Claude Code 2.1's real event shapes.

FAKE_CLI_MODE picks the outcome: ok | auth | rate_limit | permission | crash | malformed.
It reads the prompt from stdin, as the real one does, and echoes its length.
"""

import json
import os
import sys
from pathlib import Path

mode = os.environ.get("FAKE_CLI_MODE", "ok")
prompt = sys.stdin.read()
session = "9613d116-9910-454b-82fc-ca8fc578743b"


def emit(event):
    print(json.dumps(event), flush=True)


emit(
    {
        "type": "system",
        "subtype": "init",
        "cwd": str(Path.cwd()),
        "session_id": session,
        "model": "claude-sonnet-4-5",
        "permissionMode": "acceptEdits",
        "tools": ["Bash", "Edit"],
    }
)
if mode == "crash":
    print("Error: Cannot find module 'undici'", file=sys.stderr)
    os.kill(os.getpid(), 11)
if mode == "malformed":
    print("claude: unexpected output, no result event")
    sys.exit(0)
usage = {
    "input_tokens": 900,
    "cache_creation_input_tokens": 200,
    "cache_read_input_tokens": 100,
    "output_tokens": 150,
}
result = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "num_turns": 3,
    "total_cost_usd": 0.0123,
    "usage": usage,
    "result": f"edited ({len(prompt)} chars of prompt)",
    "permission_denials": [],
    "session_id": session,
    "api_error_status": None,
    "terminal_reason": "completed",
}
if mode in ("auth", "rate_limit"):
    status = 401 if mode == "auth" else 429
    emit(
        {
            "type": "system",
            "subtype": "api_retry",
            "attempt": 1,
            "max_retries": 10,
            "retry_delay_ms": 500,
            "error_status": status,
            "error": "authentication_failed" if mode == "auth" else "rate_limit",
            "session_id": session,
        }
    )
    result.update(
        is_error=True,
        num_turns=1,
        total_cost_usd=0,
        api_error_status=status,
        terminal_reason="api_error",
        usage={"input_tokens": 0, "output_tokens": 0},
        result="API Error: 401 invalid x-api-key"
        if mode == "auth"
        else "API Error: Request rejected (429) · rate limit exceeded",
    )
    emit(result)
    sys.exit(1)
if mode == "permission":
    result["permission_denials"] = [
        {
            "tool_name": "Bash",
            "tool_use_id": "toolu_1",
            "tool_input": {"command": "curl example.com"},
        }
    ]
emit(result)
