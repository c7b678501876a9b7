"""The access proxy (``via: proxy``): the agent calls a loopback URL, the proxy adds the key.

The agent's tool is pointed at ``http://127.0.0.1:PORT/<capability>/<name>``
and given the sentinel key ``outloop-proxy``. For each request the proxy

- refuses ``CONNECT`` and absolute-form targets (it is not a forward proxy),
- checks the capability in the path (constant-time, revocable, with a TTL),
- forwards only to that credential's ``upstream`` and only what its ``allow``
  rules admit, with ``..`` segments refused so no upstream can normalise a
  path out of them,
- drops every auth header the agent sent and adds the real key,
- never follows a redirect: 3xx goes back as is, with a same-upstream
  ``Location`` rewritten to come back through the proxy,
- streams the response as it arrives (server-sent events, chunked bodies),
  removing the key and its encodings from headers and body on the way.

Built on aiohttp: one library for both sides, with llhttp (the parser Node
uses) on the server, streaming bodies both ways, per-upstream TLS contexts,
connection pooling and no implicit redirects or proxy-from-environment, all in
one event loop thread that serves concurrent requests without a thread each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from outloop_cli.credentials.capability import CapabilityDenied
from outloop_cli.credentials.redact import Redactor
from outloop_cli.credentials.routes import PathRefused, ProxyRoute

SENTINEL_KEY = "outloop-proxy"
# request bodies are read whole before forwarding (LLM requests are small); this caps them
MAX_REQUEST_BODY = 64 * 1024 * 1024
# the most response bytes handled (scrubbed and written) in one piece
_BATCH = 1024 * 1024

# headers that belong to one connection, not to the message (RFC 9110 §7.6.1)
_HOP_BY_HOP = frozenset(
    h
    for h in (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
# every way a client or tool may try to send a key of its own
AUTH_HEADERS = frozenset(
    h
    for h in (
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "private-token",
        "x-auth-token",
        "cookie",
    )
)
# recomputed or meaningless once the proxy has read the body or decompressed the response
_REQUEST_DROP = frozenset(("host", "content-length", "expect", "accept-encoding"))
_RESPONSE_DROP = frozenset(("content-length", "content-encoding"))

EventSink = Callable[[str, dict[str, Any]], None]
Admit = Callable[[str, str], None]

_log = logging.getLogger(__name__)


class AccessProxy:
    """Serves every ``via: proxy`` route of one run on one loopback port."""

    def __init__(
        self,
        routes: Mapping[str, ProxyRoute],
        *,
        admit: Admit,
        on_event: EventSink,
        redactor: Redactor,
        upstream_read_timeout: float = 600.0,
    ) -> None:
        self._routes = dict(routes)
        self._admit = admit
        self._on_event = on_event
        self._redactor = redactor
        self._read_timeout = upstream_read_timeout
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._server: asyncio.base_events.Server | None = None
        self._unix_server: asyncio.base_events.Server | None = None
        self._handler: web.Server | None = None
        self.port = 0

    async def start(self, unix_path: Path | None = None) -> int:
        """Listen on 127.0.0.1 (a free port) and, when given, on the Unix socket ``unix_path``.

        A sandboxed agent has a network namespace of its own: it reaches the proxy
        through the Unix socket, bound into the sandbox and relayed there on
        127.0.0.1 with the same port, so its base URL stays the same.
        """
        for name, route in self._routes.items():
            connector = aiohttp.TCPConnector(ssl=route.ssl_context() or False, limit=64)
            self._sessions[name] = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                # an HTTP(S)_PROXY in outloop's environment must not receive the key
                trust_env=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=30, sock_read=self._read_timeout
                ),
                skip_auto_headers=("User-Agent", "Content-Type"),
            )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        # the low-level server: one handler for every path, no router in the way
        self._handler = web.Server(self._handle, access_log=None)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._handler, sock=sock)
        if unix_path is not None:
            old_umask = os.umask(0o177)
            try:
                self._unix_server = await loop.create_unix_server(
                    self._handler, path=str(unix_path)
                )
            finally:
                os.umask(old_umask)
        return self.port

    async def close(self) -> None:
        if self._unix_server is not None:
            self._unix_server.close()
        if self._server is not None:
            self._server.close()
            if self._handler is not None:
                # ends idle keep-alive connections and waits briefly for requests in flight
                await self._handler.shutdown(timeout=2)
            await self._server.wait_closed()
        if self._unix_server is not None:
            await self._unix_server.wait_closed()
        for session in self._sessions.values():
            await session.close()

    def route_url(self, token: str, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{token}/{name}"

    # --- one request ------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        method = request.method
        raw = request.raw_path
        if method == "CONNECT":
            return self._refuse(request, 405, "connect_refused", None, None)
        if not raw.startswith("/") or raw.startswith("//"):
            return self._refuse(request, 400, "absolute_uri_refused", None, None)
        # /<capability>/<name>[/<path on the upstream>][?query]
        path_part, _, query = raw.partition("?")
        token, _, after = path_part[1:].partition("/")
        name, slash, rest = after.partition("/")
        rest = slash + rest
        try:
            self._admit(token, name)
        except CapabilityDenied as denied:
            return self._refuse(request, 403, denied.reason.value, name, rest)
        route = self._routes.get(name)
        if route is None:
            return self._refuse(request, 403, "credential_not_in_scope", name, rest)
        try:
            path = route.upstream_path(rest)
        except (PathRefused, UnicodeDecodeError):
            return self._refuse(request, 400, "bad_path", name, rest)
        if not route.allows(method, path):
            return self._refuse(request, 403, "route_not_allowed", name, path)
        # defence in depth: the plan checked the upstream against the policy's binding
        if not route.within_binding(path):
            return self._refuse(request, 403, "outside_binding", name, path)
        try:
            body = await _read_body(request)
        except _TooLarge:
            return self._refuse(request, 413, "request_too_large", name, path)
        target = route.upstream.origin + path + (f"?{query}" if query else "")
        return await self._forward(request, route, token, method, path, target, body, started)

    async def _forward(
        self,
        request: web.BaseRequest,
        route: ProxyRoute,
        token: str,
        method: str,
        path: str,
        target: str,
        body: bytes,
        started: float,
    ) -> web.StreamResponse:
        headers = _upstream_headers(request.headers, route)
        fields: dict[str, Any] = {
            "name": route.name,
            "method": method,
            "host": route.upstream.netloc,
            "path": self._redactor.redact_text(path),
            "request_bytes": len(body),
        }
        session = self._sessions[route.name]
        try:
            upstream = await session.request(
                method,
                URL(target, encoded=True),
                headers=headers,
                data=body if body or method not in ("GET", "HEAD") else None,
                allow_redirects=False,
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            return self._fail(request, 502, fields, started, _cert_message(exc))
        except (aiohttp.ClientError, OSError) as exc:
            return self._fail(request, 502, fields, started, f"upstream unreachable: {exc}")
        except asyncio.TimeoutError:
            return self._fail(request, 504, fields, started, "upstream timed out")
        sent = 0
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            skip = _HOP_BY_HOP | _RESPONSE_DROP | _connection_tokens(upstream.headers)
            for key, value in upstream.headers.items():
                if key.lower() in skip:
                    continue
                if key.lower() == "location":
                    value, off_host = self._location(value, target, route, token)
                    if off_host:
                        fields["redirect"] = "off_upstream"
                response.headers.add(key, self._redactor.redact_text(value))
            await response.prepare(request)
            stream = self._redactor.stream()
            while chunk := await _next_chunk(upstream.content):
                out = stream.feed(chunk)
                if out:
                    await response.write(out)
                    sent += len(out)
            tail = stream.finish()
            if tail:
                await response.write(tail)
                sent += len(tail)
            await response.write_eof()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            fields["error"] = self._redactor.redact_text(f"upstream stream broken: {exc}"[:300])
            _abort(request)
        except (ConnectionError, RuntimeError) as exc:
            # the client went away mid-stream; nothing to send it
            fields["error"] = f"client gone: {type(exc).__name__}"
        finally:
            upstream.release()
        fields.update(status=upstream.status, bytes=sent, duration_ms=_ms(started))
        self._on_event("proxy_request", fields)
        return response

    def _location(self, value: str, target: str, route: ProxyRoute, token: str) -> tuple[str, bool]:
        """A same-upstream redirect comes back through the proxy; any other is left alone."""
        absolute = urllib.parse.urljoin(target, value)
        parts = urllib.parse.urlsplit(absolute)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        base = route.upstream.base_path
        if origin == route.upstream.origin.lower() and (
            parts.path == base or parts.path.startswith(base + "/") or not base
        ):
            rest = parts.path[len(base) :]
            query = f"?{parts.query}" if parts.query else ""
            return self.route_url(token, route.name) + rest + query, False
        # never followed by us; the agent's client may, carrying only the sentinel
        return value, True

    def _refuse(
        self,
        request: web.BaseRequest,
        status: int,
        reason: str,
        name: str | None,
        path: str | None,
    ) -> web.Response:
        self._on_event(
            "credential_denied",
            {
                "via": "proxy",
                "name": name,
                "method": request.method,
                "path": None
                if path is None
                else self._redactor.redact_text(path.partition("?")[0]),
                "reason": reason,
                "status": status,
            },
        )
        return web.Response(
            status=status,
            text=f"outloop proxy: refused ({reason})\n",
            headers={"Connection": "close"} if status in (400, 405) else None,
        )

    def _fail(
        self,
        request: web.BaseRequest,
        status: int,
        fields: dict[str, Any],
        started: float,
        message: str,
    ) -> web.Response:
        text = self._redactor.redact_text(message)[:500]
        fields.update(status=status, bytes=0, duration_ms=_ms(started), error=text)
        self._on_event("proxy_request", fields)
        return web.Response(status=status, text=f"outloop proxy: {text}\n")


class _TooLarge(Exception):
    pass


async def _read_body(request: web.BaseRequest) -> bytes:
    if request.content_length is not None and request.content_length > MAX_REQUEST_BODY:
        raise _TooLarge
    if request.headers.get("Expect", "").lower() == "100-continue" and request.body_exists:
        # curl and others wait for this before a large body; only admitted requests get it
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_REQUEST_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _next_chunk(content: aiohttp.StreamReader) -> bytes:
    """What has arrived: waits for the first bytes, then takes whatever else is buffered.

    Never waits for more than the first bytes, so an event goes out as soon as
    it arrives, while a fast bulk download is handled in large pieces.
    """
    chunk = await content.readany()
    while chunk and len(chunk) < _BATCH:
        more = content.read_nowait(_BATCH - len(chunk))
        if not more:
            break
        chunk += more
    return chunk


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Headers named in ``Connection`` are hop-by-hop too (lower case, like the sets above)."""
    value = headers.get("Connection", "")
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _upstream_headers(incoming: Mapping[str, str], route: ProxyRoute) -> CIMultiDict[str]:
    drop = _HOP_BY_HOP | AUTH_HEADERS | _REQUEST_DROP | _connection_tokens(incoming)
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        if key.lower() in drop or key.lower() == route.header.lower():
            continue
        headers.add(key, value)
    # the response body is scrubbed, so it must arrive readable
    headers["Accept-Encoding"] = "identity"
    headers[route.header] = route.header_value()
    return headers


def _cert_message(exc: aiohttp.ClientConnectorCertificateError) -> str:
    return (
        f"upstream certificate not trusted ({exc.certificate_error}); "
        "for a private upstream, set `ca_bundle:` on the credential"
    )


def _abort(request: web.BaseRequest) -> None:
    """End the client's connection without a clean end of body, so it sees the failure."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


__all__ = ["AUTH_HEADERS", "SENTINEL_KEY", "AccessProxy"]
