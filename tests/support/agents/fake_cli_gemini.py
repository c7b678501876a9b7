"""Fake `gemini --output-format stream-json`: Gemini CLI 0.61's real JSONL events and exit codes.

FAKE_CLI_MODE: ok | auth | rate_limit | crash | malformed.
"""

import json
import os
import sys

mode = os.environ.get("FAKE_CLI_MODE", "ok")
prompt = sys.stdin.read()


def emit(event):
    print(json.dumps(event), flush=True)


def stats(inp, out):
    return {
        "total_tokens": inp + out,
        "input_tokens": inp,
        "output_tokens": out,
        "cached": 0,
        "input": inp,
        "duration_ms": 10,
        "tool_calls": 1,
        "models": {
            "gemini-2.5-flash": {
                "total_tokens": inp + out,
                "input_tokens": inp,
                "output_tokens": out,
                "cached": 0,
                "input": inp,
            }
        },
    }


if mode == "malformed":
    print("Warning: 256-color support not detected.", file=sys.stderr)
    sys.exit(0)
emit({"type": "init", "timestamp": "2026-11-27T16:48:18.044Z", "session_id": "s1", "model": "auto"})
emit({"type": "message", "role": "user", "content": prompt})
if mode == "crash":
    print("FATAL ERROR: Reached heap limit Allocation failed", file=sys.stderr)
    os.kill(os.getpid(), 6)
if mode in ("auth", "rate_limit"):
    code, status, text = (
        (401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key.")
        if mode == "auth"
        else (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    )
    body = json.dumps({"error": {"code": code, "message": text, "status": status}})
    emit(
        {
            "type": "result",
            "status": "error",
            "error": {"type": "unknown", "message": f"[API Error: {body}]"},
            "stats": stats(0, 0),
        }
    )
    sys.exit(1)
emit(
    {
        "type": "tool_use",
        "tool_name": "write_file",
        "tool_id": "t1",
        "parameters": {"file_path": "a.txt", "content": "a"},
    }
)
emit({"type": "tool_result", "tool_id": "t1", "status": "success"})
emit({"type": "message", "role": "assistant", "content": "All ", "delta": True})
emit({"type": "message", "role": "assistant", "content": "done.", "delta": True})
emit({"type": "result", "status": "success", "stats": stats(2000, 100)})
