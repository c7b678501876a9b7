"""Fake `aider --message-file F --analytics-log L ...`: aider 0.86's output and analytics events.

FAKE_CLI_MODE: ok | auth | rate_limit | crash | malformed. Like the real one it
exits 0 when the model API fails and only prints litellm's exception.
"""

import json
import os
import sys
import time
from pathlib import Path

mode = os.environ.get("FAKE_CLI_MODE", "ok")
args = sys.argv[1:]
log = args[args.index("--analytics-log") + 1]
message = Path(args[args.index("--message-file") + 1]).read_text()


def event(name, **props):
    with open(log, "a") as f:
        f.write(
            json.dumps(
                {"event": name, "properties": props, "user_id": "u", "time": int(time.time())}
            )
            + "\n"
        )


if mode == "malformed":
    print("Aider v0.86.2")
    sys.exit(0)
event("launched")
print("Aider v0.86.2\nMain model: openai/gpt-4.1 with diff edit format")
if mode == "crash":
    print("Traceback (most recent call last):\n  ...\nMemoryError", file=sys.stderr)
    sys.exit(1)
event("message_send_starting")
if mode == "auth":
    print(
        "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided"
    )
    event("exit", reason="Completed --message-file")
    sys.exit(0)
if mode == "rate_limit":
    print(
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests"
    )
    print("Retrying in 0.2 seconds...")
    print(
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests"
    )
    event("exit", reason="Completed --message-file")
    sys.exit(0)
print(f"Tokens: 2.3k sent, 60 received. Cost: $0.0052 message, $0.0052 session. ({len(message)})")
event(
    "message_send",
    main_model="openai/REDACTED",
    edit_format="diff",
    prompt_tokens=2346,
    completion_tokens=60,
    total_tokens=2406,
    cost=0.005172,
    total_cost=0.005172,
)
event(
    "message_send",
    main_model="openai/REDACTED",
    edit_format="diff",
    prompt_tokens=2500,
    completion_tokens=40,
    total_tokens=2540,
    cost=0.0053,
    total_cost=0.010472,
)
event("exit", reason="Completed --message-file")
