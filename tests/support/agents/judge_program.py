"""A judge for `goal.judge.preset: command`: the prompt on stdin, one Messages call, the verdict out.

It asks the model named by ``$ANTHROPIC_BASE_URL`` (the run's access proxy, with
the sentinel key in ``$ANTHROPIC_API_KEY``) exactly what outloop wrote, and
prints the model's answer as one JSON line with the usage the API reported. An
answer that is not JSON is printed as it came: outloop must call it a judge_error.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main() -> int:
    prompt = sys.stdin.read()
    # the judge's view of the commit must be read-only: say what a write did
    try:
        with open("judge-wrote-here.txt", "w") as f:
            f.write("x")
        print("judge-view-write: allowed", file=sys.stderr)
    except OSError as exc:
        print(f"judge-view-write: refused ({exc.strerror})", file=sys.stderr)
    body = json.dumps(
        {
            "model": "judge-scripted",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()
    request = urllib.request.Request(
        os.environ["ANTHROPIC_BASE_URL"].rstrip("/") + "/v1/messages",
        data=body,
        headers={
            "content-type": "application/json",
            "x-api-key": os.environ["ANTHROPIC_API_KEY"],
            "anthropic-version": "2023-06-01",
        },
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        reply = json.load(response)
    text = "".join(b.get("text", "") for b in reply.get("content", []) if b.get("type") == "text")
    try:
        verdict = json.loads(text)
    except json.JSONDecodeError:
        print(text)
        return 0
    usage = reply.get("usage", {})
    verdict["usage"] = {
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cost_usd": 0.01,
    }
    print(json.dumps(verdict))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
