"""Test agent: calls an API through the access proxy, as a tool reading VAR_BASE/VAR_KEY would.

Arguments: the base-URL variable, the key variable, and optionally a file whose
content the agent writes into the repo (an agent that found a key somewhere).
"""

import json
import os
import sys
import urllib.request
from pathlib import Path

base_var, key_var = sys.argv[1], sys.argv[2]
base = os.environ[base_var]
request = urllib.request.Request(
    base + "/echo", headers={"Authorization": f"Bearer {os.environ.get(key_var, '')}"}
)
with urllib.request.urlopen(request, timeout=20) as response:
    answer = json.loads(response.read())
Path("api-answer.json").write_text(json.dumps(answer, indent=1))
Path("env-dump.txt").write_text("\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
if len(sys.argv) > 3:
    Path("found-key.txt").write_text(Path(sys.argv[3]).read_text())
print("called the API:", answer.get("path"))
