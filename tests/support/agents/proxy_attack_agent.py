"""Test agent: attacks the access proxy the way an agent speaking raw HTTP would.

Usage: proxy_attack_agent.py ATTACK BASE_VAR LOOT_DIR [DIRECT_URL]
  ATTACK      reflect | paths | flood
  BASE_VAR    the variable holding the proxy route's base URL
  LOOT_DIR    a directory (git-ignored, in the worktree) for every byte received
  DIRECT_URL  the upstream itself (the control: only reachable without a sandbox);
              the same attacks go there too, with a key the agent made up

reflect: asks the upstream to hand the key back in every way (``<base>/reflect/<mode>``),
         HTTP/1.1 with ``Connection: close``, read until the server closes.
paths:   the allow-list is ``GET /v1/public/*``; tries to reach ``/v1/admin`` anyway.
flood:   3,000 requests the allow-list refuses, on one kept-alive connection.
Then meets the goal (counter.txt), so the run ends ``goal_met``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

MODES = (
    "reason",
    "header_name",
    "header_value",
    "body",
    "case",
    "trailers",
    "gzip",
    "gzip_gzip",
    "gzip_twice_headers",
    "br",
    "unknown",
    "te_gzip",
    "split_chunks",
    "split_gzip",
    "close_delimited",
    "early_hints",
)

# (label, path after the base, extra header lines)
PATHS = (
    ("semicolon", "/public/..;/admin", ""),
    ("semicolon_deep", "/public/x/..;/..;/admin", ""),
    ("encoded_dots", "/public/%2e%2e/admin", ""),
    ("double_encoded_dots", "/public/%252e%252e/admin", ""),
    ("encoded_slash", "/public/..%2fadmin", ""),
    ("double_encoded_slash", "/public/..%252fadmin", ""),
    ("backslash", "/public/..\\admin", ""),
    ("encoded_backslash", "/public/..%5cadmin", ""),
    ("fullwidth_dots", "/public/%EF%BC%8E%EF%BC%8E/admin", ""),
    ("dot_segments", "/public/../admin", ""),
    ("x_original_url", "/public/ok", "X-Original-URL: /v1/admin\r\n"),
    ("x_rewrite_url", "/public/ok", "X-Rewrite-URL: /v1/admin\r\n"),
)

OWN_KEY = "sk-agent-made-up-0123456789abcdef"


def raw(url: str, path: str, headers: str = "", http10: bool = False) -> bytes:
    parts = urlsplit(url)
    version = "HTTP/1.0" if http10 else "HTTP/1.1"
    request = f"GET {parts.path}{path} {version}\r\nHost: api\r\n{headers}Connection: close\r\n\r\n"
    out = b""
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10) as conn:
        conn.sendall(request.encode("latin-1"))
        conn.settimeout(10)
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except OSError:
            pass
    return out


def reflect(base: str, loot: Path, direct: str | None) -> None:
    for mode in MODES:
        auth = "Authorization: Bearer outloop-proxy\r\n"
        (loot / f"proxy-{mode}.bin").write_bytes(raw(base, f"/reflect/{mode}", auth))
        if mode.startswith(("split", "close")):
            reply = raw(base, f"/reflect/{mode}", auth, http10=True)
            (loot / f"proxy-{mode}-http10.bin").write_bytes(reply)
        if direct:
            own = f"Authorization: Bearer {OWN_KEY}\r\n"
            (loot / f"direct-{mode}.bin").write_bytes(raw(direct, f"/v1/reflect/{mode}", own))


def paths(base: str, loot: Path, direct: str | None) -> None:
    found: dict[str, dict[str, str]] = {}
    for label, path, headers in PATHS:
        reply = raw(base, path, headers)
        (loot / f"path-{label}.bin").write_bytes(reply)
        found[label] = {"proxy": reply.split(b"\r\n", 1)[0].decode("latin-1")}
        if direct:
            answer = raw(direct, "/v1" + path, headers)
            (loot / f"direct-path-{label}.bin").write_bytes(answer)
            found[label]["direct"] = answer.split(b"\r\n", 1)[0].decode("latin-1")
    (loot / "paths.json").write_text(json.dumps(found, indent=1))


def flood(base: str, loot: Path) -> None:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    statuses: dict[int, int] = {}
    for n in range(3000):
        conn.request("GET", f"{parts.path}/private/{n}", headers={"Authorization": "Bearer x"})
        response = conn.getresponse()
        response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
    conn.close()
    (loot / "flood.json").write_text(json.dumps(statuses))


def main() -> None:
    attack, base_var, loot_dir = sys.argv[1:4]
    direct = sys.argv[4] if len(sys.argv) > 4 else None
    base = os.environ[base_var]
    loot = Path(loot_dir)
    loot.mkdir(exist_ok=True)
    if direct:
        (loot / "own-key.txt").write_text(OWN_KEY)
    if attack == "reflect":
        reflect(base, loot, direct)
    elif attack == "paths":
        paths(base, loot, direct)
    elif attack == "flood":
        flood(base, loot)
    Path("counter.txt").write_text("1\n")
    print("attack done:", attack)


if __name__ == "__main__":
    main()
