"""Shared by the broker, proxy, helper and attack tests: canaries, leak search, a broker fixture."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials.broker import Broker


def canary() -> str:
    """A fresh secret per test, with characters that URL and JSON encodings change."""
    return f"sk-canary/{secrets.token_urlsafe(18)}+Z="


def leak_forms(value: str) -> list[str]:
    """Every encoding a leak could take; a sink holding any of them has leaked the value."""
    raw = value.encode()
    forms = {
        value,
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value)[1:-1].replace("/", "\\/"),
    }
    return sorted(forms)


def assert_no_leak(value: str, *sinks: str | bytes, where: str = "output") -> None:
    for sink in sinks:
        text = sink.decode("utf-8", "replace") if isinstance(sink, bytes) else sink
        for form in leak_forms(value):
            assert form not in text, f"secret leaked into {where} as {form!r}"


@dataclass
class Events:
    """Collects the broker's events as the engine's audit log would receive them."""

    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        # what the audit log would write: must be JSON-serialisable
        json.dumps(fields)
        with self.lock:
            self.items.append((name, dict(fields)))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [f for n, f in self.items if n == name]

    def reasons(self) -> list[str]:
        return [str(f.get("reason")) for f in self.named("credential_denied")]

    def dump(self) -> str:
        with self.lock:
            return "\n".join(json.dumps([n, f]) for n, f in self.items)


def proxy_cred(name: str, upstream: str, **kwargs: Any) -> CredentialConfig:
    return CredentialConfig(name=name, via="proxy", upstream=upstream, **kwargs)


@contextmanager
def started_broker(
    secrets_: dict[str, str],
    credentials: Iterable[CredentialConfig],
    events: Events,
    **kwargs: Any,
) -> Iterator[Broker]:
    with Broker.start(
        run_id="run-1",
        workspace="client-a",
        secrets=secrets_,
        credentials=list(credentials),
        on_event=events,
        **kwargs,
    ) as broker:
        yield broker


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    method: str = "GET",
    *,
    path: str = "",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Reply:
    """One request with the standard library's client (no code shared with the proxy)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, response.getheaders(), data)
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are (for requests no client library would write) and read the reply."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bound(name: str, *, upstreams: Iterable[str] = (), hosts: Iterable[str] = ()) -> str:
    """A policy's secret entry (YAML flow) that lets ``name`` go to these upstreams and hosts."""
    parts = [f"name: {name}"]
    ups = list(upstreams)
    if ups:
        parts.append("upstreams: [" + ", ".join(json.dumps(u) for u in ups) + "]")
    hs = list(hosts)
    if hs:
        parts.append("hosts: [" + ", ".join(json.dumps(h) for h in hs) + "]")
    return "{" + ", ".join(parts) + "}"


def grant_api_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo: Path, upstream: str, key: str = ""
) -> str:
    """A policy whose workspace ``client-a`` holds ``repo`` and may send ``api`` to ``upstream``.

    The key comes as CI hands one over (``OUTLOOP_SECRET_CLIENT_A_API``); returned.
    """
    key = key or "sk-" + secrets.token_hex(16)
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f'workspaces:\n  client-a:\n    repos: ["{repo}"]\n'
        f"    secrets: [{bound('api', upstreams=[upstream])}]\n"
    )
    policy.chmod(0o600)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)
    return key


def grant_api_key_and_helper(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo: Path, upstream: str
) -> None:
    """:func:`grant_api_key`, and a helper credential ``tool`` too (the loop's
    ``credentials: {tool: {via: helper}}``): the broker's own socket, and its directory,
    come into the agent's view."""
    grant_api_key(monkeypatch, tmp_path, repo, upstream)
    entries = f"[{bound('api', upstreams=[upstream])}, {{name: tool, helper: true}}]"
    (tmp_path / "policy.yml").write_text(
        f'workspaces:\n  client-a:\n    repos: ["{repo}"]\n    secrets: {entries}\n'
    )
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_TOOL", "tool-" + "x" * 16)


def echo_route(upstream: str) -> dict[str, Any]:
    """A loop's ``credentials:``: ``api`` through the proxy to ``upstream``, only ``GET /echo``.

    The agent finds the route's base URL in ``API_BASE``.
    """
    return {
        "api": {"via": "proxy", "upstream": upstream, "env": "API_BASE", "allow": ["GET /echo"]}
    }
