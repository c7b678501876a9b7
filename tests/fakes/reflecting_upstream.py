"""A hostile-but-honest API on 127.0.0.1 that hands back the key it was sent, in every place HTTP allows.

Written on raw sockets (standard library only, no code shared with the proxy),
so that it can send what no HTTP server library would: the key as a reason
phrase, as a header *name*, in chunked trailers, split across chunks that
arrive in separate reads, under stacked or unknown ``Content-Encoding``, in a
body delimited only by closing the connection.

The key is what followed the scheme in ``Authorization`` (or the whole
``x-api-key``); ``/<anything>/<mode>`` picks the reflection (see ``MODES``),
``?cut=N`` where a split falls. Every request is recorded with its raw
request line, so tests can see which path reached the upstream.

It also reads paths the lenient way some servers do (``effective_path``):
``X-Original-URL`` / ``X-Rewrite-URL`` replace the path, percent-decoding is
applied twice, Unicode is NFKC-folded, ``\\`` is ``/``, ``;parameters`` are dropped and dot segments
resolved, so ``/v1/public/..;/admin`` is ``/v1/admin``. Anything under
``/admin`` or ``/v1/admin`` answers ``admin area``: the place an allow-list must keep an agent
out of.
"""

from __future__ import annotations

import base64
import gzip
import posixpath
import socket
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fakes.accept_loop import AcceptLoop

# pause between pieces that must arrive in separate reads on the other side
_GAP = 0.05


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _State:
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


ADMIN = b"admin area: nothing an agent may reach\n"


def effective_path(seen: Seen) -> str:
    """The path as a lenient server (Tomcat, IIS, a rewriting framework) would serve it."""
    path = seen.header("X-Original-URL") or seen.header("X-Rewrite-URL") or seen.target
    path = urllib.parse.unquote(urllib.parse.unquote(path.partition("?")[0]))
    # full-width '．' and '／' folded to '.' and '/', as some servers' Unicode handling does
    path = unicodedata.normalize("NFKC", path).replace("\\", "/")
    path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
    return posixpath.normpath(path) if path.startswith("/") else "/" + path


def is_admin(path: str) -> bool:
    """``/admin`` or ``/v1/admin`` (and below): outside every allow rule the tests write."""
    return any(path == p or path.startswith(p + "/") for p in ("/admin", "/v1/admin"))


def key_of(seen: Seen) -> str:
    auth = seen.header("Authorization")
    if auth is not None:
        return auth.split(" ", 1)[-1]
    return seen.header("x-api-key") or ""


Writer = Callable[[bytes], None]


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _sized(status: str, body: bytes, extra: list[tuple[str, str]] | None = None) -> bytes:
    headers = [("Content-Type", "text/plain"), *(extra or []), ("Content-Length", str(len(body)))]
    return _head(status, headers) + body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _pieces(send: Writer, parts: list[bytes]) -> None:
    """Each part in its own TCP segment, a pause apart, so the proxy reads them one by one."""
    for index, part in enumerate(parts):
        if index:
            time.sleep(_GAP)
        send(part)


def _split(data: bytes, cut: int) -> list[bytes]:
    cut = max(1, min(cut, len(data) - 1))
    return [data[:cut], data[cut:]]


def _respond(mode: str, key: str, query: dict[str, str], send: Writer, other: str = "") -> bool:
    """Write one response for ``mode``; True when the connection must close after it."""
    raw = key.encode()
    body = f"you sent {key}\n".encode()
    cut = int(query.get("cut", str(len("you sent ") + len(key) // 2)))
    if mode == "reason":
        send(_sized(f"401 invalid key {key}", b"no\n"))
    elif mode == "header_name":
        send(_sized("200 OK", b"ok\n", [(f"X-Echo-{key}", "1")]))
    elif mode == "header_value":
        send(
            _sized(
                "401 Unauthorized",
                b"no\n",
                [
                    ("X-Echo", key),
                    ("WWW-Authenticate", f'Bearer error="{key}"'),
                    ("X-Echo-Basic", base64.b64encode(b"user:" + raw).decode()),
                    ("X-Echo-Hex", raw.hex()),
                    ("X-Echo-Url", urllib.parse.quote(key, safe="")),
                    ("Set-Cookie", f"k={urllib.parse.quote(key)}; Path=/"),
                ],
            )
        )
    elif mode == "body":
        lines = [
            f"plain {key}",
            f"b64 {base64.b64encode(raw).decode()}",
            f"basic {base64.b64encode(b'user:' + raw).decode()}",
            f"b64url {base64.urlsafe_b64encode(raw).decode().rstrip('=')}",
            f"hex {raw.hex()} {raw.hex().upper()}",
            f"url {urllib.parse.quote(key, safe='')} {urllib.parse.quote(key)}",
            f"form {urllib.parse.quote_plus(key)}",
            '{"json": "' + key.replace("/", "\\/") + '"}',
        ]
        send(_sized("200 OK", ("\n".join(lines) + "\n").encode()))
    elif mode == "case":
        # what a server that shouts its errors, or folds header names, would send
        shouted = f"INVALID KEY: {key.upper()}\nquiet: {key.lower()}\n".encode()
        send(_sized("401 Unauthorized", shouted, [(f"x-{key.lower()}", key.upper())]))
    elif mode == "trailers":
        head = _head(
            "200 OK",
            [("Transfer-Encoding", "chunked"), ("Trailer", f"X-Key, X-T-{key}")],
        )
        tail = f"0\r\nX-Key: {key}\r\nX-T-{key}: 1\r\n\r\n".encode()
        send(head + _chunk(b"body without the key\n") + tail)
    elif mode == "gzip":
        send(_sized("200 OK", gzip.compress(body), [("Content-Encoding", "gzip")]))
    elif mode == "gzip_gzip":
        twice = gzip.compress(gzip.compress(body))
        send(_sized("200 OK", twice, [("Content-Encoding", "gzip, gzip")]))
    elif mode == "gzip_twice_headers":
        twice = gzip.compress(gzip.compress(body))
        send(_sized("200 OK", twice, [("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")]))
    elif mode == "br":
        # not real brotli (no encoder in the standard library): a proxy that cannot decode
        # "br" must refuse it whatever the bytes are
        send(_sized("200 OK", body, [("Content-Encoding", "br")]))
    elif mode == "unknown":
        # an encoding of the upstream's own: the key reversed, which no scrubber looks for
        send(_sized("200 OK", body[::-1], [("Content-Encoding", "x-reversed")]))
    elif mode == "te_gzip":
        head = _head("200 OK", [("Transfer-Encoding", "gzip, chunked")])
        send(head + _chunk(gzip.compress(body)) + b"0\r\n\r\n")
    elif mode == "split_chunks":
        head = _head("200 OK", [("Transfer-Encoding", "chunked")])
        first, second = _split(body, cut)
        _pieces(send, [head + _chunk(first), _chunk(second) + b"0\r\n\r\n"])
    elif mode == "split_gzip":
        packed = gzip.compress(body)
        head = _head("200 OK", [("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")])
        first, second = _split(packed, cut)
        _pieces(send, [head + _chunk(first), _chunk(second) + b"0\r\n\r\n"])
    elif mode == "close_delimited":
        head = _head("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        first, second = _split(body, cut)
        _pieces(send, [head + first, second])
        return True
    elif mode == "early_hints":
        send(_head("103 Early Hints", [("Link", f"</{key}>; rel=preload")]))
        send(_sized("200 OK", b"ok\n"))
    elif mode == "other":
        # a value the upstream knows from elsewhere (another client's key on a shared host)
        send(_sized("200 OK", f"another client's key: {other}\n".encode()))
    elif mode == "ok":
        send(_sized("200 OK", b"ok\n"))
    else:
        send(_sized("404 Not Found", b"no such mode\n"))
    return False


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


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[Seen, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = line.split(" ", 2)
    headers = []
    for text in header_lines:
        name, _, value = text.partition(":")
        headers.append((name.strip(), value.strip()))
    seen = Seen(method, target, headers)
    length = int(seen.header("Content-Length") or 0)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    return seen, rest[length:]


class ReflectingUpstream:
    """``with ReflectingUpstream() as up: up.url``; ``up.seen`` lists what arrived."""

    def __init__(self, other_key: str = "") -> None:
        self._other = other_key
        self._state = _State()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._loop = AcceptLoop(self._sock, self._serve_in_thread)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.seen)

    def _serve_in_thread(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        try:
            while True:
                got = _read_request(conn, buffer)
                if got is None:
                    return
                seen, buffer = got
                with self._state.lock:
                    self._state.seen.append(seen)
                parts = urllib.parse.urlsplit(seen.target)
                closing = (seen.header("Connection") or "").lower() == "close"
                if is_admin(effective_path(seen)):
                    conn.sendall(_sized("200 OK", ADMIN))
                else:
                    mode = parts.path.rstrip("/").rsplit("/", 1)[-1]
                    query = dict(urllib.parse.parse_qsl(parts.query))
                    if _respond(mode, key_of(seen), query, conn.sendall, self._other):
                        return
                if closing:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def __enter__(self) -> ReflectingUpstream:
        self._loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop()


__all__ = ["ADMIN", "MODES", "ReflectingUpstream", "Seen", "effective_path", "key_of"]
