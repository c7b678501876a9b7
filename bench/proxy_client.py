"""The client of the access-proxy benchmark: the same code measures direct and through the proxy.

Standard library only, so it runs as the agent of a real ``outloop run``
(inside the sandbox, through the broker's proxy) and, for the
floor, as a plain process on the host going straight to the upstream.

Usage: ``proxy_client.py BASE_URL_OR_ENV CONTROL_DIR [COUNTER_FILE]``. The
benchmark writes ``CONTROL_DIR/cmd-<i>.json`` (``{"kind": ..., ...}``); this
process answers each in ``CONTROL_DIR/<name>-<i>.json`` and stops on
``{"kind": "stop"}``, bumping ``COUNTER_FILE`` (the run's goal) when given.
BASE_URL_OR_ENV is a URL or the name of the variable holding it (the
proxy route the run hands the agent).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

_POLL = 0.002
_DEADLINE = 900.0


def _connection(base: urllib.parse.SplitResult, timeout: float = 60) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port, timeout=timeout)


def throughput(base: urllib.parse.SplitResult, path: str) -> dict[str, Any]:
    """Bytes per second of one streamed body, read as it arrives."""
    conn = _connection(base)
    started = time.perf_counter()
    conn.request("GET", base.path + path)
    response = conn.getresponse()
    size = 0
    while chunk := response.read1(1 << 20):
        size += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return {"status": response.status, "bytes": size, "seconds": elapsed}


def latency(base: urllib.parse.SplitResult, path: str, count: int) -> dict[str, Any]:
    """Seconds of each of ``count`` small requests on one kept-alive connection."""
    conn = _connection(base)
    times = []
    status = 0
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", base.path + path)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        status = response.status
    conn.close()
    return {"status": status, "seconds": times}


def first_byte(base: urllib.parse.SplitResult, path: str) -> dict[str, Any]:
    """Seconds from sending a request (on a new connection) to the first byte of its stream."""
    conn = _connection(base)
    started = time.perf_counter()
    conn.request("GET", base.path + path)
    response = conn.getresponse()
    first = response.read1(65536)
    elapsed = time.perf_counter() - started
    response.read()
    conn.close()
    return {"status": response.status, "bytes": len(first), "seconds": elapsed}


def _write(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(data))
    partial.replace(path)


def _wait_for(path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + _DEADLINE
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"proxy_client: no {path.name} in {_DEADLINE:.0f}s")
        time.sleep(_POLL)
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def serve(base_url: str, control: Path) -> None:
    base = urllib.parse.urlsplit(base_url.rstrip("/"))
    _write(control / "ready.json", {"pid": os.getpid()})
    index = 0
    while True:
        command = _wait_for(control / f"cmd-{index}.json")
        kind = command["kind"]
        if kind == "stop":
            return
        if kind == "throughput":
            result = throughput(base, command["path"])
        elif kind == "latency":
            result = latency(base, command["path"], int(command["count"]))
        elif kind == "first_byte":
            result = first_byte(base, command["path"])
        else:
            raise SystemExit(f"proxy_client: unknown command {kind!r}")
        _write(control / f"result-{index}.json", result)
        # a line per answer: the run sees a live agent, not an idle one
        print(f"{kind}: done", flush=True)
        index += 1


def main(argv: list[str]) -> int:
    target, control = argv[0], Path(argv[1])
    base_url = target if "://" in target else os.environ[target]
    serve(base_url, control)
    if len(argv) > 2:
        counter = Path(argv[2])
        value = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(f"{value + 1}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
