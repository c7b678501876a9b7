"""The egress proxy against real servers on loopback (127.0.0.2 stands in for the internet)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.sandbox import ports, relay
from outloop_cli.sandbox.egress import EgressService, Resolver
from outloop_cli.sandbox.egress_rules import (
    EgressRules,
    RuleError,
    address_refusal,
    narrow,
    parse_network,
    parse_rule,
)

INTERNET = "127.0.0.2"


class _Echo(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        seen = self.server.seen  # type: ignore[attr-defined]
        seen.append((self.path, dict(self.headers)))
        body = f"hello from {self.server.server_address[0]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((INTERNET, 0), _Echo)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Running:
    def __init__(
        self, rules: EgressRules, path: Path, resolve: Resolver | None, port: int | None = None
    ) -> None:
        self.events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {} if resolve is None else {"resolve": resolve}
        if port is not None:
            kwargs["sandbox_port"] = port
        self.service = EgressService.start(rules, path, self.events.append, **kwargs)
        self.path = self.service.socket_path
        self.port = port

    def _connect(self) -> socket.socket:
        if self.port is not None:
            return socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(self.path))
        return sock

    def ask(self, head: str, then: bytes = b"") -> bytes:
        with self._connect() as sock:
            sock.sendall(head.encode())
            data = b""
            if head.startswith("CONNECT"):
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return data
                    data += chunk
                if not data.startswith(b"HTTP/1.1 200"):
                    return data
                sock.sendall(then)
            while chunk := sock.recv(65536):
                data += chunk
            return data

    def settled(self, count: int = 1) -> list[dict[str, Any]]:
        """The events, once ``count`` are in: a tunnel's is written when both sides have closed."""
        deadline = time.monotonic() + 10
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.events

    def stop(self) -> None:
        self.service.close()
        assert not self.path.exists()
        assert [p.name for p in self.path.parent.glob("egress-*.handoff")] == []


def running(
    tmp_path: Path,
    *rules: str,
    reach: tuple[str, ...] = (INTERNET,),
    resolve: Resolver | None = None,
) -> Running:
    parsed = EgressRules(
        tuple(parse_rule(r) for r in rules), tuple(parse_network(n) for n in reach)
    )
    return Running(parsed, tmp_path, resolve)


@pytest.fixture
def stop_after() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for proxy in started:
        proxy.stop()


def test_connect_to_a_listed_host_tunnels_and_is_audited(
    tmp_path: Path, upstream: ThreadingHTTPServer, stop_after: list[Running]
) -> None:
    port = upstream.server_address[1]
    proxy = running(tmp_path, f"{INTERNET}:{port}")
    stop_after.append(proxy)
    answer = proxy.ask(
        f"CONNECT {INTERNET}:{port} HTTP/1.1\r\nHost: {INTERNET}:{port}\r\n\r\n",
        b"GET /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 Connection Established")
    assert b"hello from 127.0.0.2 /simple/" in answer
    (event,) = proxy.settled()
    assert event["decision"] == "allowed" and event["host"] == INTERNET and event["port"] == port
    assert event["bytes_up"] > 0 and event["bytes_down"] > 0


def test_the_proxys_unix_socket_takes_no_descriptor(
    tmp_path: Path, upstream: ThreadingHTTPServer, stop_after: list[Running]
) -> None:
    """Bound into the sandbox: a descriptor sent with a request would be closed on the loop.

    (The end-to-end attack, with its control, is tests/security/test_descriptor_passing.py.)
    """
    proxy = running(tmp_path, f"{INTERNET}:{upstream.server_address[1]}")
    stop_after.append(proxy)
    read, write = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(proxy.path))
            with pytest.raises(PermissionError):
                socket.send_fds(conn, [b"CONNECT x:1 HTTP/1.1\r\n\r\n"], [read])
    finally:
        os.close(read)
        os.close(write)


def test_a_sandbox_port_handed_over_is_the_proxy_itself(
    tmp_path: Path, upstream: ThreadingHTTPServer, stop_after: list[Running]
) -> None:
    """The sandbox's listener, taken through the handoff socket, answers as the proxy does."""
    port = upstream.server_address[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        sandbox_port = int(probe.getsockname()[1])
    parsed = EgressRules((parse_rule(f"{INTERNET}:{port}"),), (parse_network(INTERNET),))
    proxy = Running(parsed, tmp_path, None, port=sandbox_port)
    stop_after.append(proxy)
    listener = socket.create_server(("127.0.0.1", sandbox_port))
    held = relay.hand_over(listener, str(proxy.service.open_handoff()), sandbox_port)
    listener.close()
    try:
        allowed = proxy.ask(
            f"CONNECT {INTERNET}:{port} HTTP/1.1\r\nHost: {INTERNET}:{port}\r\n\r\n",
            b"GET /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        refused = proxy.ask(f"CONNECT {INTERNET}:1 HTTP/1.1\r\nHost: {INTERNET}:1\r\n\r\n")
    finally:
        held.close()
    assert b"hello from 127.0.0.2 /simple/" in allowed
    assert refused.startswith(b"HTTP/1.1 403"), refused
    decisions = sorted(str(event["decision"]) for event in proxy.settled(2))
    assert decisions == ["allowed", "refused"]


def test_connections_past_the_cap_get_503_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_after: list[Running]
) -> None:
    """Tunnels hold the runner's descriptors; an agent cannot open them without bound."""
    monkeypatch.setattr(ports, "MAX_CONNECTIONS", 2)
    proxy = running(tmp_path, f"{INTERNET}:1")
    stop_after.append(proxy)
    held = []
    for _ in range(2):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(proxy.path))
        held.append(conn)
    try:
        # the two are waiting for their request heads: the third is turned away
        assert proxy.ask("CONNECT x:1 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503")
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 10
    while True:
        answer = proxy.ask(f"CONNECT {INTERNET}:2 HTTP/1.1\r\nHost: {INTERNET}:2\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 503") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    # served again once they are gone (refused by the rules, as that port is not listed)
    assert answer.startswith(b"HTTP/1.1 403"), answer


def test_plain_http_is_forwarded_in_origin_form_without_proxy_headers(
    tmp_path: Path, upstream: ThreadingHTTPServer, stop_after: list[Running]
) -> None:
    port = upstream.server_address[1]
    proxy = running(tmp_path, f"{INTERNET}:{port}")
    stop_after.append(proxy)
    answer = proxy.ask(
        f"GET http://{INTERNET}:{port}/pkg/a.tar.gz HTTP/1.1\r\nHost: other-site.example\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.0 200") and b"/pkg/a.tar.gz" in answer
    ((path, headers),) = upstream.seen  # type: ignore[attr-defined]
    assert path == "/pkg/a.tar.gz"
    assert "Proxy-Authorization" not in headers and headers["Connection"] == "close"
    # the site the rules admitted, not the one the agent's Host header named
    assert headers["Host"] == f"{INTERNET}:{port}"


@pytest.mark.parametrize(
    ("rules", "head", "reason"),
    [
        (("pypi.org:443",), "CONNECT 127.0.0.2:{port} HTTP/1.1", "not in the run's egress rules"),
        (("127.0.0.2:1",), "CONNECT 127.0.0.2:{port} HTTP/1.1", "not in the run's egress rules"),
        (("localhost:{port}",), "CONNECT localhost:{port} HTTP/1.1", "resolves to loopback"),
        (("127.0.0.1:{port}",), "CONNECT 127.0.0.1:{port} HTTP/1.1", "resolves to loopback"),
        (("127.0.0.2:{port}",), "GET https://127.0.0.2:{port}/ HTTP/1.1", "use CONNECT"),
        (("127.0.0.2:{port}",), "GET /local HTTP/1.1", "not a proxy request"),
        (("127.0.0.2:{port}",), "GET http://u:p@127.0.0.2:{port}/ HTTP/1.1", "user information"),
    ],
)
def test_what_the_rules_do_not_admit_is_refused_and_audited(
    tmp_path: Path,
    upstream: ThreadingHTTPServer,
    stop_after: list[Running],
    rules: tuple[str, ...],
    head: str,
    reason: str,
) -> None:
    port = upstream.server_address[1]
    proxy = running(tmp_path, *(r.format(port=port) for r in rules))
    stop_after.append(proxy)
    answer = proxy.ask(head.format(port=port) + "\r\nHost: x\r\n\r\n")
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 400 Bad Request")
    assert reason.encode() in answer
    assert upstream.seen == []  # type: ignore[attr-defined]
    (event,) = proxy.settled()
    assert event["decision"] == "refused" and reason in event["reason"]


def test_a_name_that_also_resolves_to_loopback_is_refused(
    tmp_path: Path, upstream: ThreadingHTTPServer, stop_after: list[Running]
) -> None:
    port = upstream.server_address[1]

    async def rebinding(host: str, port: int) -> list[str]:
        return [INTERNET, "127.0.0.1"]

    proxy = running(tmp_path, f"mirror.example.test:{port}", resolve=rebinding)
    stop_after.append(proxy)
    answer = proxy.ask(f"CONNECT mirror.example.test:{port} HTTP/1.1\r\n\r\n")
    assert b"403" in answer.split(b"\r\n")[0] and b"resolves to loopback (127.0.0.1)" in answer
    assert upstream.seen == []  # type: ignore[attr-defined]


def test_the_connection_goes_to_the_address_that_was_checked(
    tmp_path: Path, upstream: ThreadingHTTPServer, stop_after: list[Running]
) -> None:
    port = upstream.server_address[1]
    answers = iter([[INTERNET], ["127.0.0.1"]])

    async def flipping(host: str, port: int) -> list[str]:
        return next(answers)

    proxy = running(tmp_path, f"pkgs.example.test:{port}", resolve=flipping)
    stop_after.append(proxy)
    answer = proxy.ask(
        f"CONNECT pkgs.example.test:{port} HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert b"hello from 127.0.0.2 /a" in answer
    assert proxy.settled()[0]["address"] == INTERNET


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("PyPI.org:443", "pypi.org:443"),
        ("files.pythonhosted.org.:443", "files.pythonhosted.org:443"),
        ("*.pythonhosted.org:443", "*.pythonhosted.org:443"),
        ("[::1]:8080", "[::1]:8080"),
        ("127.0.0.2:80", "127.0.0.2:80"),
    ],
)
def test_rules_are_read_normalised(text: str, rule: str) -> None:
    assert str(parse_rule(text)) == rule


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("pypi.org", "no port"),
        ("https://pypi.org:443", "not host:port"),
        ("pypi.org:443/simple", "not host:port"),
        ("pypi.*.org:443", "first label"),
        ("pypi.org:0", "out of range"),
        ("bad_host:443", "not a host name"),
        ("", "empty"),
    ],
)
def test_bad_rules_say_why(text: str, says: str) -> None:
    with pytest.raises(RuleError, match=says) as info:
        parse_rule(text)
    assert info.value.hint


def test_wildcards_admit_names_below_only() -> None:
    rule = parse_rule("*.pythonhosted.org:443")
    assert rule.admits("files.pythonhosted.org", 443)
    assert not rule.admits("pythonhosted.org", 443)
    assert not rule.admits("evilpythonhosted.org", 443)
    assert not rule.admits("files.pythonhosted.org", 80)


def test_a_loop_narrows_the_policy_and_never_widens_it() -> None:
    policy = EgressRules((parse_rule("*.example.com:443"), parse_rule("pypi.org:443")))
    asked = (
        parse_rule("api.example.com:443"),
        parse_rule("*.cdn.example.com:443"),
        parse_rule("pypi.org:80"),
        parse_rule("*.com:443"),
        parse_rule("example.com:443"),
    )
    kept, refused = narrow(policy, asked)
    assert [str(r) for r in kept.rules] == ["api.example.com:443", "*.cdn.example.com:443"]
    assert refused == ["pypi.org:80", "*.com:443", "example.com:443"]


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("151.101.0.223", None),
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "not public"),
        ("224.0.0.1", "not public"),
    ],
)
def test_only_public_addresses_unless_the_policy_names_a_range(
    address: str, refused: str | None
) -> None:
    import ipaddress

    why = address_refusal(ipaddress.ip_address(address), ())
    assert (why is None) if refused is None else (why is not None and refused in why)
    everywhere = (parse_network("0.0.0.0/0"), parse_network("::/0"))
    assert address_refusal(ipaddress.ip_address(address), everywhere) is None
