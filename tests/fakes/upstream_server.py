"""A fake HTTP(S) API on 127.0.0.1, built on the standard library so it shares no code with the proxy.

Endpoints (any method):

- ``/echo``            JSON of the method, path, headers and body it received
- ``/sse?n=N[&hold=H]`` N server-sent events; before event H (default 1) it waits for ``release``
- ``/chunked?n=N&size=S[&fill=sse]`` N chunks of S bytes (x, or SSE-like text), chunked
- ``/bytes?n=N``       N bytes with a Content-Length
- ``/redirect?to=URL`` 302 to URL
- ``/cookie?set=C``    200 with ``Set-Cookie: C``
- ``/leak``            500 whose body and headers repeat the Authorization it got,
                       in plain, base64, hex, URL and JSON encodings
- ``/gzip``            a gzip-encoded echo of the Authorization it got
- ``/bulkleak?n=N&size=S`` N chunks of S bytes of SSE-like text, with the key it got
                       (as is, in swapped letter case, in a base64 Basic blob, in
                       upper-case hex) cut across the end of every chunk but the last
"""

from __future__ import annotations

import base64
import gzip
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class UpstreamState:
    requests: list[Received] = field(default_factory=list)
    # /sse holds its later events until the test sets this
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # events /sse has sent so far (all requests)
    sse_events: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # no Nagle delay between headers and body (it would add ~40 ms per response)
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = Received(self.command, self.path, dict(self.headers.items()), body)
        with self.server.state.lock:
            self.server.state.requests.append(received)
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        route = parts.path.rsplit("/", 1)[-1]
        handler = getattr(self, f"_do_{route}", None)
        if handler is None:
            self._send(404, b"not found\n")
            return
        handler(received, query)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        ctype: str = "text/plain",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _start_chunked(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _do_echo(self, received: Received, query: dict[str, str]) -> None:
        data = {
            "method": received.method,
            "path": received.path,
            "headers": received.headers,
            "body": received.body.decode("utf-8", "replace"),
        }
        self._send(200, json.dumps(data).encode(), ctype="application/json")

    def _do_sse(self, received: Received, query: dict[str, str]) -> None:
        self._start_chunked("text/event-stream")
        # hold=0: even the first event waits for release (headers go out alone first)
        held = int(query.get("hold", "1"))
        for index in range(int(query.get("n", "3"))):
            if index == held:
                self.server.state.release.wait(10)
            self._chunk(f'event: message\ndata: {{"n": {index}}}\n\n'.encode())
            with self.server.state.lock:
                self.server.state.sse_events += 1
        self.wfile.write(b"0\r\n\r\n")

    def _do_chunked(self, received: Received, query: dict[str, str]) -> None:
        self._start_chunked("application/octet-stream")
        size = int(query.get("size", "16384"))
        if query.get("fill") == "sse":
            # what an LLM stream looks like, for realistic scanning costs
            event = b'data: {"choices":[{"delta":{"content":"lorem ipsum dolor sit"}}]}\n\n'
            block = (event * (size // len(event) + 1))[:size]
        else:
            block = b"x" * size
        for _ in range(int(query.get("n", "4"))):
            self._chunk(block)
        self.wfile.write(b"0\r\n\r\n")

    def _do_bytes(self, received: Received, query: dict[str, str]) -> None:
        self._send(200, b"y" * int(query.get("n", "1024")), ctype="application/octet-stream")

    def _do_redirect(self, received: Received, query: dict[str, str]) -> None:
        self._send(302, b"moved\n", headers={"Location": query.get("to", "/")})

    def _do_cookie(self, received: Received, query: dict[str, str]) -> None:
        self._send(200, b"set\n", headers={"Set-Cookie": query.get("set", "session=1; Path=/")})

    def _do_leak(self, received: Received, query: dict[str, str]) -> None:
        auth = received.headers.get("Authorization") or received.headers.get("x-api-key") or ""
        key = auth.split(" ", 1)[-1]
        raw = key.encode()
        body = "\n".join(
            [
                f"invalid key: {key}",
                f"base64: {base64.b64encode(raw).decode()}",
                f"basic: {base64.b64encode(b'user:' + raw).decode()}",
                f"hex: {raw.hex()}",
                f"url: {urllib.parse.quote(key, safe='')}",
                f"json: {json.dumps({'key': key})}",
            ]
        ).encode()
        self._send(
            500, body, headers={"X-Echo-Key": key, "WWW-Authenticate": f'Bearer error="{key}"'}
        )

    def _do_bulkleak(self, received: Received, query: dict[str, str]) -> None:
        auth = received.headers.get("Authorization") or ""
        raw = auth.split(" ", 1)[-1].encode()
        forms = [raw, raw.swapcase(), base64.b64encode(b"user:" + raw), raw.hex().upper().encode()]
        size, count = int(query.get("size", "65536")), int(query.get("n", "8"))
        event = b'data: {"choices":[{"delta":{"content":"lorem ipsum dolor sit"}}]}\n\n'
        body = bytearray((event * (size * count // len(event) + 1))[: size * count])
        for index in range(count - 1):
            form = b" " + forms[index % len(forms)] + b" "
            start = (index + 1) * size - len(form) // 2 - index % 3
            body[start : start + len(form)] = form
        self._start_chunked("text/event-stream")
        for index in range(count):
            self._chunk(bytes(body[index * size : (index + 1) * size]))
        self.wfile.write(b"0\r\n\r\n")

    def _do_gzip(self, received: Received, query: dict[str, str]) -> None:
        auth = received.headers.get("Authorization") or ""
        body = gzip.compress(f"you sent {auth}\n".encode())
        self._send(200, body, headers={"Content-Encoding": "gzip"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: UpstreamState


class UpstreamServer:
    """``with UpstreamServer() as up: up.url``; pass an SSL context for HTTPS."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.state = UpstreamState()
        # 127.0.0.2 stands in for "the internet": a host that is not the upstream
        self.host = host
        self._server = _Server((host, 0), _Handler)
        self._server.state = self.state
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.requests)

    def __enter__(self) -> UpstreamServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.release.set()
        self._server.shutdown()
        self._server.server_close()
