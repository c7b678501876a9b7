"""The access proxy (``via: proxy``): the agent calls a loopback URL, the proxy adds the key.

The agent's tool is pointed at ``http://127.0.0.1:PORT/<capability>/<name>``
and given the sentinel key ``outloop-proxy``. For each request the proxy

- refuses ``CONNECT`` and absolute-form targets (it is not a forward proxy),
- checks the capability in the path (constant-time, revocable, with a TTL),
- forwards only to that credential's ``upstream`` and only what its ``allow``
  rules admit, matched against the path decoded once into its one meaning
  (``routes.normalise_path``: dot segments, ``;`` parameters, double
  encoding, encoded slashes and backslashes are refused), and forwards that
  meaning's canonical encoding, not the agent's bytes,
- drops every auth header the agent sent and every header that asks a server
  to serve another path or method (``X-Original-URL``, ``X-HTTP-Method-Override``,
  ``X-Forwarded-*``...), refuses ``_method=`` style query overrides, and adds
  the real key,
- never follows a redirect: 3xx goes back as is, with a same-upstream
  ``Location`` rewritten to come back through the proxy,
- asks the upstream for ``identity`` or ``gzip`` only, decodes gzip itself and
  refuses (502) any other, stacked or unknown ``Content-Encoding`` or
  ``Transfer-Encoding``: a body it cannot read it cannot scrub,
- streams the response as it arrives (server-sent events, chunked bodies),
  removing the key in every form masking knows from header names and
  values and from the (decoded) body, split across reads or not; the reason
  phrase is the standard one for the status, never the upstream's, trailers
  are not forwarded, and an error names what failed, never what the upstream
  sent.

Built on aiohttp: one library for both sides, with llhttp (the parser Node
uses) on the server, streaming bodies both ways, per-upstream TLS contexts,
connection pooling and no implicit redirects or proxy-from-environment, all in
one event loop thread that serves concurrent requests without a thread each.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from outloop_cli.credentials.capability import CapabilityDenied
from outloop_cli.credentials.redact import Redactor
from outloop_cli.credentials.routes import PathRefused, ProxyRoute, UpstreamPath
from outloop_cli.sandbox import ports
from outloop_cli.sandbox.handoff import ListenerHandoff

SENTINEL_KEY = "outloop-proxy"
# request bodies are read whole before forwarding (LLM requests are small); this caps them
MAX_REQUEST_BODY = 64 * 1024 * 1024
# the most response bytes handled (scrubbed and written) in one piece
_BATCH = 1024 * 1024
# what may wait unread from one upstream before reading from it pauses
_READ_BUFFER = 4 * _BATCH
# how much of what the agent sent (a route name, a path) an audit event keeps
_FIELD_MAX = 100
_PATH_MAX = 300

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
# headers that ask a server (or a framework in front of it) to serve another path or
# method than the request line says, or to trust a client address: the allow-list
# judged the request line, so none of these may reach the upstream
OVERRIDE_HEADERS = frozenset(
    (
        "x-original-url",
        "x-rewrite-url",
        "x-override-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-http-destinationurl",
        "x-middleware-subrequest",
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "x-host",
        "x-proxyuser-ip",
    )
)
_OVERRIDE_PREFIXES = ("x-forwarded-", "x-original-", "x-rewrite-", "x-envoy-")
# the same override as a query parameter (Rails, Laravel, some Google APIs)
_OVERRIDE_PARAMS = frozenset(
    ("_method", "x-http-method-override", "x-http-method", "x-method-override", "$httpmethod")
)
# recomputed or meaningless once the proxy has read the body or decompressed the response
_REQUEST_DROP = frozenset(("host", "content-length", "expect", "accept-encoding"))
_RESPONSE_DROP = frozenset(("content-length", "content-encoding"))
# what the proxy can decode, and so scrub; asked for in this order
ACCEPT_ENCODING = "gzip, identity"

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
        self._handoff: ListenerHandoff | None = None
        self.port = 0

    async def start(self, unix_path: Path | None = None) -> int:
        """Listen on 127.0.0.1 (a free port) and, when given, on the Unix socket ``unix_path``.

        A sandboxed agent has a network namespace of its own, where the proxy
        answers on 127.0.0.1 with the same port, so its base URL stays the
        same: the sandbox's listening socket comes in through a handoff socket
        opened for its start (:meth:`open_handoff`, ``sandbox/handoff.py``), or
        else the sandbox relays each connection to ``unix_path``.
        """
        for name, route in self._routes.items():
            connector = aiohttp.TCPConnector(ssl=route.ssl_context() or False, limit=64)
            self._sessions[name] = aiohttp.ClientSession(
                connector=connector,
                # decoded here (_decoder_for), so that what cannot be decoded is refused
                auto_decompress=False,
                # an HTTP(S)_PROXY in outloop's environment must not receive the key
                trust_env=False,
                # cookies the upstream sets are the agent's (passed on, scrubbed): a jar
                # here would keep them and send them on every later request, a session of
                # the broker's that no policy granted
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=30, sock_read=self._read_timeout
                ),
                skip_auto_headers=("User-Agent", "Content-Type"),
                # reading from the upstream pauses when this much waits unread: large
                # enough that a fast download is not paused and resumed every few reads
                read_bufsize=_READ_BUFFER,
            )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        # the low-level server: one handler for every path, no router in the way
        self._handler = web.Server(self._handle, access_log=None)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=sock)
        if unix_path is not None:
            self._unix_server = await loop.create_unix_server(
                self._protocol, sock=ports.unix_listener(unix_path)
            )
            self._handoff = ListenerHandoff(self.port, self._serve_listener)
        return self.port

    async def open_handoff(self, path: Path) -> None:
        """A handoff socket at ``path`` for one sandbox's start (``ListenerHandoff.open``)."""
        if self._handoff is None:
            raise RuntimeError("the proxy serves no sandbox: it was started without a Unix socket")
        await self._handoff.open(path)

    async def _serve_listener(self, listener: socket.socket) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(self._protocol, sock=listener)

    def _protocol(self) -> asyncio.BaseProtocol:
        """A connection's protocol: aiohttp's, or a 503 when ``ports.MAX_CONNECTIONS`` are open.

        aiohttp counts a connection once the event loop has made it, a moment
        after this, so a burst of accepts can pass the cap by up to one listen
        backlog; the next burst sees them all.
        """
        assert self._handler is not None
        if len(self._handler.connections) >= ports.MAX_CONNECTIONS:
            return _Busy()
        return self._handler()

    async def close(self) -> None:
        if self._handoff is not None:
            await self._handoff.close()
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
        except PathRefused as refused:
            return self._refuse(request, 400, refused.reason, name, rest, refused.detail)
        if _overrides_method(query):
            return self._refuse(request, 400, "method_override_refused", name, path.decoded)
        if not route.allows(method, path):
            return self._refuse(request, 403, "route_not_allowed", name, path.decoded)
        # defence in depth: the plan checked the upstream against the policy's binding
        if not route.within_binding(path):
            return self._refuse(request, 403, "outside_binding", name, path.decoded)
        try:
            body = await _read_body(request)
        except _TooLarge:
            return self._refuse(request, 413, "request_too_large", name, path.decoded)
        target = route.upstream.origin + path.encoded + (f"?{query}" if query else "")
        return await self._forward(request, route, token, method, path, target, body, started)

    async def _forward(
        self,
        request: web.BaseRequest,
        route: ProxyRoute,
        token: str,
        method: str,
        path: UpstreamPath,
        target: str,
        body: bytes,
        started: float,
    ) -> web.StreamResponse:
        headers, dropped = _upstream_headers(request.headers, route)
        fields: dict[str, Any] = {
            "name": route.name,
            "method": method,
            "host": route.upstream.netloc,
            "path": self._redactor.redact_text(path.decoded),
            "request_bytes": len(body),
        }
        if dropped:
            fields["dropped_headers"] = dropped
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
        except aiohttp.ClientConnectorError as exc:
            # about reaching the host, nothing the upstream sent
            return self._fail(request, 502, fields, started, f"upstream unreachable: {exc}")
        except aiohttp.ServerDisconnectedError:
            message = "the upstream closed the connection without an answer"
            return self._fail(request, 502, fields, started, message)
        except aiohttp.ClientResponseError:
            # the parser's message quotes the upstream's bytes: none of them go back
            message = "the upstream's answer is not valid HTTP"
            return self._fail(request, 502, fields, started, message)
        except (aiohttp.ClientError, OSError) as exc:
            message = f"upstream failed ({type(exc).__name__})"
            return self._fail(request, 502, fields, started, message)
        except asyncio.TimeoutError:
            return self._fail(request, 504, fields, started, "upstream timed out")
        decoder = _decoder_for(upstream.headers)
        if decoder is None:
            upstream.close()
            fields["refused"] = "encoding"
            message = (
                "the upstream's answer was refused: its Content-Encoding or Transfer-Encoding "
                f"is not one the proxy can decode and scrub (it asks for {ACCEPT_ENCODING})"
            )
            return self._fail(request, 502, fields, started, message)
        if not isinstance(decoder, _Identity):
            fields["encoding"] = "gzip"
        sent = 0
        try:
            # the standard phrase for the status: the upstream's own may carry anything
            response = _Response(status=upstream.status)
            skip = _HOP_BY_HOP | _RESPONSE_DROP | _connection_tokens(upstream.headers)
            for key, value in upstream.headers.items():
                if key.lower() in skip:
                    continue
                if key.lower() == "location":
                    value, off_host = self._location(value, target, route, token)
                    if off_host:
                        fields["redirect"] = "off_upstream"
                response.headers.add(
                    self._redactor.redact_name(key), self._redactor.redact_header_value(value)
                )
            # the headers wait in aiohttp's buffer for the first body bytes, so a small
            # answer leaves in one write (one wake-up of the agent), not three
            writer = await response.prepare(request)
            content = upstream.content
            stream = self._redactor.stream()
            chunk = content.read_nowait(_BATCH)
            if not chunk and not content.at_eof():
                # nothing of the body yet (a stream that starts later): the agent gets
                # the status and headers now, as the upstream sent them
                _send_headers(writer)
                chunk = await _next_chunk(content)
            last = b""
            while chunk:
                out = b"".join(stream.feed(piece) for piece in decoder.feed(chunk))
                if content.at_eof():
                    # the whole rest is here: it goes out with the end of the body
                    last = out
                    break
                if out:
                    await response.write(out)
                    sent += len(out)
                else:
                    # all of it held back (it may begin a key): the headers go anyway
                    _send_headers(writer)
                chunk = await _next_chunk(content)
            decoder.finish()
            last += stream.flush()
            sent += len(last)
            await response.write_eof(last)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            fields["error"] = f"upstream stream broken ({type(exc).__name__})"
            _abort(request)
        except _CorruptBody:
            fields["error"] = "the upstream's gzip body is corrupt or cut short"
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
        detail: str | None = None,
    ) -> web.Response:
        # the name and path are what the agent typed: kept short, so a flood of long
        # ones cannot fill the audit log's bound with a few requests
        fields: dict[str, Any] = {
            "via": "proxy",
            "name": None if name is None else self._redactor.redact_text(name)[:_FIELD_MAX],
            "method": request.method[:_FIELD_MAX],
            "path": None
            if path is None
            else self._redactor.redact_text(path.partition("?")[0])[:_PATH_MAX],
            "reason": reason,
            "status": status,
        }
        if detail is not None:
            fields["detail"] = detail
        self._on_event("credential_denied", fields)
        why = f"{reason}: {detail}" if detail else reason
        return web.Response(
            status=status,
            text=f"outloop proxy: refused ({why})\n",
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


class _Busy(asyncio.Protocol):
    """Answers 503 and closes: the proxy holds ``ports.MAX_CONNECTIONS`` already."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(ports.BUSY_RESPONSE)
        transport.close()


class _Response(web.StreamResponse):
    """A streamed response whose headers go out with its first body bytes (see _forward)."""

    _send_headers_immediately = False


def _send_headers(writer: Any) -> None:
    # aiohttp before 3.12 sends headers at once and has no such method: nothing to do
    send = getattr(writer, "send_headers", None)
    if send is not None:
        send()


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
    if not chunk or len(chunk) >= _BATCH:
        return chunk
    # one join, not a copy per buffered piece
    pieces = [chunk]
    size = len(chunk)
    while size < _BATCH:
        more = content.read_nowait(_BATCH - size)
        if not more:
            break
        pieces.append(more)
        size += len(more)
    return chunk if len(pieces) == 1 else b"".join(pieces)


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Headers named in ``Connection`` are hop-by-hop too (lower case, like the sets above)."""
    value = headers.get("Connection", "")
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _upstream_headers(
    incoming: Mapping[str, str], route: ProxyRoute
) -> tuple[CIMultiDict[str], list[str]]:
    """The headers to send upstream, and the override headers dropped (lower-case names)."""
    drop = _HOP_BY_HOP | AUTH_HEADERS | _REQUEST_DROP | _connection_tokens(incoming)
    headers: CIMultiDict[str] = CIMultiDict()
    dropped: list[str] = []
    for key, value in incoming.items():
        lower = key.lower()
        if lower in drop or lower == route.header.lower():
            continue
        if lower in OVERRIDE_HEADERS or lower.startswith(_OVERRIDE_PREFIXES):
            if lower not in dropped:
                dropped.append(lower)
            continue
        headers.add(key, value)
    # the response is scrubbed, so it must come in an encoding the proxy can decode
    headers["Accept-Encoding"] = ACCEPT_ENCODING
    headers[route.header] = route.header_value()
    return headers, dropped[:20]


def _overrides_method(query: str) -> bool:
    """A query parameter that frameworks read as the real method (``_method=DELETE``)."""
    for pair in query.split("&"):
        name = urllib.parse.unquote_plus(pair.partition("=")[0]).strip().lower()
        if name in _OVERRIDE_PARAMS:
            return True
    return False


def _codings(headers: Mapping[str, str], name: str) -> list[str]:
    """Every coding named in every ``name`` header, in order, lower case."""
    getall = getattr(headers, "getall", None)
    values: list[str] = getall(name, []) if getall is not None else [headers.get(name, "")]
    return [c.strip().lower() for v in values for c in v.split(",") if c.strip()]


class _CorruptBody(Exception):
    pass


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        yield data

    def finish(self) -> None:
        return None


class _Gunzip:
    """Streaming gzip decoding (several members in a row too), at most ``_BATCH`` bytes a step."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._midway = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while data:
                self._midway = True
                out = self._z.decompress(data, _BATCH)
                if out:
                    yield out
                if self._z.eof:
                    data = self._z.unused_data
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self._midway = False
                else:
                    data = self._z.unconsumed_tail
        except zlib.error:
            raise _CorruptBody from None

    def finish(self) -> None:
        if self._midway:
            raise _CorruptBody


def _decoder_for(headers: Mapping[str, str]) -> _Identity | _Gunzip | None:
    """How to read the body; None when the proxy cannot (and so must not pass it on)."""
    transfer = _codings(headers, "Transfer-Encoding")
    if transfer not in ([], ["chunked"]):
        return None
    content = [c for c in _codings(headers, "Content-Encoding") if c != "identity"]
    if not content:
        return _Identity()
    if content in (["gzip"], ["x-gzip"]):
        return _Gunzip()
    return None


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


__all__ = ["ACCEPT_ENCODING", "AUTH_HEADERS", "OVERRIDE_HEADERS", "SENTINEL_KEY", "AccessProxy"]
