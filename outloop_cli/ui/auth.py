"""Who may talk to the dashboard: the holder of the URL's token, from this machine's browser.

Four checks, each against a named attack:

- the token (``?token=`` in the printed URL, traded for an HttpOnly,
  SameSite=Strict session cookie and dropped from the address bar; it opens a
  session for each browser that opens it while the process lives, so the URL
  is a password): another local user or a web page cannot read the dashboard;
- the Host header must name the loopback address and port we listen on: a
  page on a hostile domain that re-points its DNS name at 127.0.0.1 (DNS
  rebinding) sends its own Host and is refused;
- a state-changing request (POST only) must come from our own origin
  (``Origin``, else ``Sec-Fetch-Site``) and carry the session's CSRF token in
  a header: a cross-site form or fetch that rides on the cookie is refused;
- every comparison of a secret is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

COOKIE = "outloop_ui_session"
CSRF_HEADER = "X-Outloop-CSRF"
_SAFE_METHODS = frozenset({"GET", "HEAD"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Guard:
    """The secrets of one ``outloop ui`` process, and the addresses it answers as."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _sessions: set[str] = field(default_factory=set)
    # host:port pairs a browser may name, filled once the port is known
    hosts: frozenset[str] = frozenset()

    def listen_on(self, host: str, port: int) -> None:
        names = {host, "localhost", "127.0.0.1"} if host != "::1" else {"[::1]", "localhost"}
        self.hosts = frozenset(f"{name}:{port}" for name in names)

    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)

    def token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self.token.encode()
        )

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        self._sessions.add(self._digest(session))
        return session

    def session_ok(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        digest = self._digest(candidate)
        # constant-time per entry; the set holds one entry per browser that opened the URL
        return any(hmac.compare_digest(digest, known) for known in self._sessions)

    def csrf_for(self, session: str) -> str:
        return hmac.new(self._key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self.csrf_for(session).encode()
        )

    def _digest(self, session: str) -> str:
        return hmac.new(self._key, b"session:" + session.encode(), hashlib.sha256).hexdigest()


def _refuse(why: str) -> web.Response:
    return web.Response(status=403, text=f"403 forbidden: {why}\n", content_type="text/plain")


def _same_origin(request: web.Request, guard: Guard) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in guard.origins()
    # browsers that send no Origin on a same-origin POST still say where it came from
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


def middleware(guard: Guard) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Host") not in guard.hosts:
            return _refuse("this dashboard answers only as the loopback address it printed")
        session = request.cookies.get(COOKIE)
        if not guard.session_ok(session):
            session = None
            if request.method in _SAFE_METHODS and guard.token_ok(request.query.get("token")):
                # the printed URL: trade its token for a session cookie, and drop the token
                # from the address bar (and from history and Referer) with a redirect
                fresh = guard.new_session()
                response = web.Response(status=303, headers={"Location": request.rel_url.path})
                response.set_cookie(
                    COOKIE, fresh, httponly=True, samesite="Strict", path="/", max_age=None
                )
                return response
            return _refuse("open the URL `outloop ui` printed (it carries the token)")
        assert session is not None
        if request.method not in _SAFE_METHODS:
            if request.method != "POST":
                return _refuse("only GET and POST are answered")
            if not _same_origin(request, guard):
                return _refuse("cross-site request")
            if not guard.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                return _refuse("missing or wrong CSRF token")
        request["session"] = session
        return await handler(request)

    return check
