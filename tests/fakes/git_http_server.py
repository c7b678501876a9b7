"""A git host on 127.0.0.1: real ``git http-backend`` (CGI) behind a small HTTP server.

Every request must carry HTTP Basic auth whose password is the server's token
(any username), as GitHub and GitLab accept a token; otherwise ``401`` with a
``WWW-Authenticate`` challenge, which is what makes git ask its credential
helpers. Each request is recorded (method, path, whether auth was given and
whether it was right), and so is every Authorization header received, so a
test can prove a token never reached a host it was not meant for.

What happened on each connection (accepted, each request line and status,
an error in a handler, closed) is kept in ``connection_log``, with times, so
that a test failing on a git transport error can show the server's side of
it (``describe()``) instead of only the client's.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def http_backend() -> str:
    found = subprocess.run(
        ["git", "--exec-path"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return str(Path(found) / "git-http-backend")


@dataclass
class GitRequest:
    method: str
    path: str
    authorization: str | None
    authorized: bool


@dataclass
class GitHostState:
    token: str
    requests: list[GitRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connection_log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, peer: Any, what: str) -> None:
        with self.lock:
            self.connection_log.append(
                f"{time.monotonic() - self.started:8.3f}s {peer[1] if peer else '-'}: {what}"
            )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # no Nagle delay between headers and body (it would add ~40 ms per response)
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.state.note(self.client_address, "accepted")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.state.note(self.client_address, "closed")

    def handle(self) -> None:
        try:
            super().handle()
        except Exception:
            self.server.state.note(
                self.client_address, "handler error: " + traceback.format_exc(limit=3)
            )
            raise

    def send_response(self, code: int, message: str | None = None) -> None:
        self.server.state.note(
            self.client_address, f"{getattr(self, 'requestline', '')!r} -> {code}"
        )
        super().send_response(code, message)

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except ValueError:
            return False
        _user, _, password = decoded.partition(":")
        return hmac.compare_digest(password.encode(), self.server.state.token.encode())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers, then the blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        header = self.headers.get("Authorization")
        body = self._body()
        ok = self._authorized(header)
        with self.server.state.lock:
            self.server.state.requests.append(GitRequest(self.command, self.path, header, ok))
        if not ok:
            message = b"authentication required\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="outloop test git host"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)
            return
        self._cgi(body)

    do_GET = do_POST = _handle  # noqa: N815 (http.server dispatches on these names)

    def _cgi(self, body: bytes) -> None:
        parts = urllib.parse.urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(parts.path),
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            # http-backend enables receive-pack (push) only for an authenticated user
            "REMOTE_USER": "outloop-test",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        done = subprocess.run(
            [self.server.backend], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: GitHostState
    root: Path
    backend: str


class GitHttpServer:
    """``with GitHttpServer(root, token) as host: host.url_for("repo.git")``.

    ``root`` holds bare repositories; ``create(name)`` makes one.
    """

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.state = GitHostState(token)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._server.root = root
        self._server.backend = http_backend()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url_for(self, repo: str) -> str:
        return f"http://{self.host}/{repo}"

    def create(self, name: str) -> Path:
        path = self.root / name
        subprocess.run(
            ["git", "init", "-q", "--bare", "-b", "main", str(path)],
            check=True,
            capture_output=True,
        )
        return path

    def describe(self) -> str:
        """The server's side of every connection so far, for a failing test's message."""
        with self.state.lock:
            lines = list(self.state.connection_log)
        return f"\n-- git host {self.host}, connections:\n" + "\n".join(lines)

    @property
    def requests(self) -> list[GitRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
