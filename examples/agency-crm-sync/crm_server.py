"""A scripted CRM for one client: a leads API on 127.0.0.1 that takes only that client's key.

    python crm_server.py --client acme --state DIR [--port 0] [--seed leads.csv] < key

The key is read from stdin (never argv, which any local user can read in
``ps``). Every request but ``GET /health`` needs ``Authorization: Bearer
<key>``; anything else gets 401. The API:

    GET  /leads          -> {"leads": [{"email": ..., "name": ..., "company": ...}, ...]}
    POST /leads          {"email": ..., "name": ..., "company": ...} -> 201 (200 if known)

What it writes under DIR, for the demo and its tests (never the key itself):

    ready.json      {"port": N, "pid": N} once it listens
    requests.jsonl  one line per request: method, path, status, and what
                    credential came with it ("own", "none" or "wrong", with a
                    short SHA-256 fingerprint of a wrong one)
    export.json     the CRM's own export: every lead, rewritten after each
                    change. The loop's goal reads it to reconcile row counts,
                    so the verifier never asks the agent what it did.

Standard library only: an agency's scheduler can run it anywhere Python is.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIELDS = ("email", "name", "company")
MAX_BODY = 64 * 1024


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CRM:
    def __init__(self, client: str, key: str, state: Path) -> None:
        self.client = client
        self._key = key
        self.state = state
        self.leads: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def credential(self, header: str | None) -> tuple[str, str | None]:
        """("own", None), ("none", None) or ("wrong", fingerprint)."""
        if not header:
            return "none", None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), self._key.encode()):
            return "own", None
        return "wrong", fingerprint(header)

    def add(self, lead: dict[str, str]) -> bool:
        with self._lock:
            known = lead["email"] in self.leads
            self.leads.setdefault(lead["email"], lead)
            self._export()
        return not known

    def listing(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.leads.values())

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock, (self.state / "requests.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    def export_now(self) -> None:
        with self._lock:
            self._export()

    def _export(self) -> None:
        data = {"client": self.client, "count": len(self.leads), "leads": list(self.leads.values())}
        tmp = self.state / "export" / "export.json.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(tmp.with_suffix(""))


def make_handler(crm: CRM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"scripted-crm-{crm.client}/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests.jsonl is the log

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            path = self.path.partition("?")[0]
            auth, wrong = crm.credential(self.headers.get("Authorization"))
            status, body = self._answer(method, path, auth)
            entry: dict[str, Any] = {"method": method, "path": path[:200], "status": status}
            entry["credential"] = auth
            if wrong:
                entry["wrong_fingerprint"] = wrong
            crm.record(entry)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _answer(self, method: str, path: str, auth: str) -> tuple[int, dict[str, Any]]:
            if method == "GET" and path == "/health":
                return 200, {"ok": True, "client": crm.client}
            if auth != "own":
                return 401, {"error": f"this CRM belongs to {crm.client}: unknown or missing key"}
            if path != "/leads":
                return 404, {"error": "no such resource"}
            if method == "GET":
                return 200, {"leads": crm.listing()}
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return 413, {"error": "too large"}
            try:
                data = json.loads(self.rfile.read(length) or b"null")
                lead = {field: str(data[field]).strip() for field in FIELDS}
            except (ValueError, TypeError, KeyError):
                return 400, {"error": f"a lead is a JSON object with {', '.join(FIELDS)}"}
            if "@" not in lead["email"]:
                return 400, {"error": "email is not an address"}
            created = crm.add(lead)
            return (201 if created else 200), {"created": created, "lead": lead}

    return Handler


def read_seed(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [{field: row[field] for field in FIELDS} for row in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=Path, help="leads the CRM already holds (CSV)")
    args = parser.parse_args(argv)
    key = sys.stdin.readline().strip()
    if not key:
        parser.error("give the client's key on stdin")
    (args.state / "export").mkdir(parents=True, exist_ok=True)
    crm = CRM(args.client, key, args.state)
    for lead in read_seed(args.seed) if args.seed else []:
        crm.add(lead)
    crm.export_now()  # an empty CRM exports its zero too
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(crm))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    ready = {"port": server.server_address[1], "pid": os.getpid(), "client": args.client}
    tmp = args.state / "ready.json.tmp"
    tmp.write_text(json.dumps(ready), encoding="utf-8")
    tmp.replace(args.state / "ready.json")
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
