"""Benchmark of the access proxy and the git credential helper, all on loopback.

Measures
- added latency of the proxy over a direct call (p50, p99) on a kept-alive connection,
- throughput through the proxy vs direct (a large chunked body),
- first-byte time of a streamed (server-sent events) response,
- the git helper's ``get`` round trip: the whole ``outloop credential get``
  process as git runs it, and the broker's socket alone.

Run: ``.venv/bin/python bench/proxy_bench.py [--requests 2000] [--json]``.
The upstream is the standard-library fake from the tests, the same for both
paths, so the difference is the proxy's cost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outloop_cli.config.model import CredentialConfig  # noqa: E402
from outloop_cli.credentials import broker_wire  # noqa: E402
from outloop_cli.credentials.broker import Broker  # noqa: E402
from tests.fakes.upstream_server import UpstreamServer  # noqa: E402

KEY = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latencies(host: str, port: int, path: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    out = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - started)
    conn.close()
    return out


def throughput(port: int, path: str) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    size = 0
    while chunk := response.read1(1 << 20):
        size += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return size / elapsed / 1e6, size


def first_byte(port: int, path: str) -> float:
    """Time to the first event of a stream (the upstream sends it at once)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    response.read1(65536)
    elapsed = time.perf_counter() - started
    response.read()
    conn.close()
    return elapsed


def serve_upstream() -> None:
    with UpstreamServer() as up:
        print(json.dumps({"url": up.url, "port": up.port}), flush=True)
        # /sse waits for release; the benchmark releases it by a request to /release
        up.state.release.set()
        sys.stdin.read()


def serve_broker(upstream_url: str) -> None:
    proxy_cred = CredentialConfig(
        name="api", via="proxy", upstream=upstream_url, env="API_BASE_URL"
    )
    git_cred = CredentialConfig(name="forge", via="git", host="127.0.0.1:9")
    with Broker.start(
        run_id="bench",
        workspace="bench",
        secrets={"api": KEY, "forge": KEY},
        credentials=[proxy_cred, git_cred],
        on_event=lambda name, fields: None,
    ) as broker:
        print(json.dumps(broker.agent_env()), flush=True)
        sys.stdin.read()


def spawn(*args: str) -> tuple[subprocess.Popen[str], Any]:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--helper-runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=("upstream", "broker"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        serve_upstream()
        return
    if args.role == "broker":
        serve_broker(args.upstream)
        return
    # three processes, as in a run: the upstream, the runner (broker), the agent (this one)
    upstream, up = spawn("--role", "upstream")
    broker, env = spawn("--role", "broker", "--upstream", up["url"])
    try:
        results = measure(args, up["port"], env)
    finally:
        for proc in (broker, upstream):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    results["cpus"] = os.cpu_count()
    results["load_average_1m"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        print(f"{key:24} {value:.3f}" if isinstance(value, float) else f"{key:24} {value}")


def measure(args: argparse.Namespace, up_port: int, env: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {"requests": args.requests}
    route = urllib.parse.urlsplit(env["API_BASE_URL"])
    assert route.port is not None
    path = "/bytes?n=256"
    # warm both paths (connection pools, code paths)
    latencies("127.0.0.1", up_port, path, 50)
    latencies("127.0.0.1", route.port, route.path + path, 50)
    direct = latencies("127.0.0.1", up_port, path, args.requests)
    proxied = latencies("127.0.0.1", route.port, route.path + path, args.requests)
    for name, values in (("direct", direct), ("proxy", proxied)):
        results[f"{name}_p50_ms"] = statistics.median(values) * 1000
        results[f"{name}_p99_ms"] = percentile(values, 99) * 1000
    results["added_p50_ms"] = results["proxy_p50_ms"] - results["direct_p50_ms"]
    results["added_p99_ms"] = results["proxy_p99_ms"] - results["direct_p99_ms"]

    big = "/chunked?n=800&size=65536&fill=sse"
    direct_mbs, size = throughput(up_port, big)
    proxy_mbs, proxied_size = throughput(route.port, route.path + big)
    assert size == proxied_size
    results["body_mb"] = size / 1e6
    results["direct_mb_s"] = direct_mbs
    results["proxy_mb_s"] = proxy_mbs
    results["throughput_ratio"] = proxy_mbs / direct_mbs

    results["first_byte_direct_ms"] = statistics.median(
        first_byte(up_port, "/sse?n=2") * 1000 for _ in range(20)
    )
    results["first_byte_proxy_ms"] = statistics.median(
        first_byte(route.port, route.path + "/sse?n=2") * 1000 for _ in range(20)
    )

    socket_times = []
    request = {
        "op": "git",
        "capability": env[broker_wire.ENV_CAPABILITY],
        "protocol": "http",
        "host": "127.0.0.1:9",
    }
    for _ in range(200):
        started = time.perf_counter()
        assert broker_wire.ask(env[broker_wire.ENV_SOCKET], request)["ok"]
        socket_times.append(time.perf_counter() - started)
    results["helper_socket_p50_ms"] = statistics.median(socket_times) * 1000

    helper_times = []
    helper_env = {**os.environ, **env}
    for _ in range(args.helper_runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-I", "-m", "outloop_cli", "credential", "get"],
            input=b"protocol=http\nhost=127.0.0.1:9\n\n",
            env=helper_env,
            capture_output=True,
            check=True,
        )
        helper_times.append(time.perf_counter() - started)
        assert b"password=" in done.stdout
    results["helper_get_p50_ms"] = statistics.median(helper_times) * 1000
    results["helper_get_p99_ms"] = percentile(helper_times, 99) * 1000

    # the same answer without building the typer app: what a fast path in main.py would cost
    lean = (
        "import os, sys\n"
        "from outloop_cli.commands.credential import helper\n"
        "answer = helper('get', sys.stdin.buffer.read(), os.environ)\n"
        "sys.stdout.buffer.write(answer.stdout)\n"
    )
    lean_times = []
    for _ in range(args.helper_runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-I", "-c", lean],
            input=b"protocol=http\nhost=127.0.0.1:9\n\n",
            env=helper_env,
            capture_output=True,
            check=True,
        )
        lean_times.append(time.perf_counter() - started)
        assert b"password=" in done.stdout
    results["helper_get_lean_p50_ms"] = statistics.median(lean_times) * 1000
    python_times = []
    for _ in range(args.helper_runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        python_times.append(time.perf_counter() - started)
    results["python_startup_p50_ms"] = statistics.median(python_times) * 1000
    return results


if __name__ == "__main__":
    main()
