"""A GitHub-shaped REST API on 127.0.0.1 for tests: the documented shapes, scripted over time.

What it serves (paths as on api.github.com, or under ``/api/v3`` like GitHub
Enterprise Server when started with ``prefix="/api/v3"``):

- ``GET /repos/{o}/{r}/commits/{sha}/check-runs`` (``filter=latest|all``,
  ``per_page``/``page`` with a ``Link`` header), ``GET …/check-runs/{id}``,
  ``GET …/check-runs/{id}/annotations``;
- ``GET /repos/{o}/{r}/commits/{sha}/status`` (the combined status);
- ``GET /repos/{o}/{r}/actions/jobs/{id}/logs`` → ``302`` to a pre-signed
  download URL on the same server (which records whether a token followed);
- pull requests: list (``head=owner:branch``), create, update, and GraphQL
  ``markPullRequestReadyForReview`` / ``convertPullRequestToDraft``;
- GitHub Apps: ``GET /repos/{o}/{r}/installation`` and
  ``POST /app/installations/{id}/access_tokens`` with the RS256 JWT checked
  against the App's public key (signature, ``iss``, ``iat``/``exp`` and the
  10-minute limit), ``DELETE /installation/token``.

Every JSON GET carries an ``ETag`` and answers ``If-None-Match`` with ``304``.
Rate limits are scripted: ``limit_next(kind)`` makes the next API request
fail like GitHub's primary (``403`` + ``X-RateLimit-Remaining: 0``),
secondary (``403`` + ``Retry-After``) or ``429`` limit. Like GitHub, the
wait a limit announced holds for every later request: one that arrives
before it has passed is answered ``429`` again and kept in ``early`` (GitHub
counts such requests as abuse), so a test can prove outloop waited.

Check runs and statuses follow timelines relative to when they were scripted:
``add_check(sha, "tests", [(0, "queued"), (0.5, "in_progress"), (1, "completed", "failure")])``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = tuple[Any, ...]


@dataclass
class ScriptedCheck:
    id: int
    name: str
    sha: str
    repo: str
    # (seconds after scripting, status[, conclusion]); before the first step it does not exist
    timeline: list[Step]
    created: float
    app_slug: str = "github-actions"
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    log: str | None = None

    def state(self, now: float) -> tuple[str, str | None] | None:
        current: tuple[str, str | None] | None = None
        for step in self.timeline:
            if now - self.created >= step[0]:
                current = (step[1], step[2] if len(step) > 2 else None)
        return current


@dataclass
class ScriptedStatus:
    id: int
    context: str
    sha: str
    repo: str
    timeline: list[Step]
    created: float
    description: str = ""

    def state(self, now: float) -> str | None:
        current = None
        for step in self.timeline:
            if now - self.created >= step[0]:
                current = step[1]
        return current


@dataclass
class App:
    app_id: str
    public_key_pem: bytes
    # installation id -> (account/owner, granted permissions)
    installations: dict[int, tuple[str, dict[str, str]]]


@dataclass
class MintedToken:
    token: str
    installation: int
    repositories: list[str]
    permissions: dict[str, str]
    revoked: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0
    # time.monotonic() when the request line arrived
    at: float = 0.0


class FakeGitHub:
    def __init__(self, *, prefix: str = "", tokens: Sequence[str] = ("ghp_test_token",)) -> None:
        self.prefix = prefix.rstrip("/")
        self.tokens = set(tokens)
        self.checks: list[ScriptedCheck] = []
        self.statuses: list[ScriptedStatus] = []
        self.pulls: dict[str, list[dict[str, Any]]] = {}
        self.apps: dict[str, App] = {}
        self.minted: dict[str, MintedToken] = {}
        self.requests: list[Recorded] = []
        self.blob_requests: list[Recorded] = []
        self.limits: list[str] = []
        # when (time.monotonic) the last announced rate-limit wait ends, and who came sooner
        self.limited_until = 0.0
        self.early: list[Recorded] = []
        self.exhaust: list[int] = []
        self.fail_next: list[int] = []
        self.default_branch = "main"
        # switches for a less complete server: ignore ?filter=latest, paginate without
        # Link headers, have no combined-status endpoint
        self.honour_filter = True
        self.link_headers = True
        self.status_endpoint = True
        # called once for each commit the API is first asked about: script its checks there
        # (like a CI system that starts when a push arrives)
        self.on_new_sha: Callable[[FakeGitHub, str, str], None] | None = None
        self._seen: set[tuple[str, str]] = set()
        self._ids = 1000
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def origin(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.origin + self.prefix

    # -- scripting --------------------------------------------------------------

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def add_check(
        self,
        sha: str,
        name: str,
        timeline: Sequence[Step],
        *,
        repo: str = "octo/widgets",
        app_slug: str = "github-actions",
        output: dict[str, Any] | None = None,
        annotations: Sequence[dict[str, Any]] = (),
        log: str | None = None,
    ) -> ScriptedCheck:
        check = ScriptedCheck(
            id=self._next_id(),
            name=name,
            sha=sha,
            repo=repo,
            timeline=list(timeline),
            created=time.monotonic(),
            app_slug=app_slug,
            output=dict(output or {}),
            annotations=list(annotations),
            log=log,
        )
        with self._lock:
            self.checks.append(check)
        return check

    def add_status(
        self,
        sha: str,
        context: str,
        timeline: Sequence[Step],
        *,
        repo: str = "octo/widgets",
        description: str = "",
    ) -> ScriptedStatus:
        status = ScriptedStatus(
            self._next_id(), context, sha, repo, list(timeline), time.monotonic(), description
        )
        with self._lock:
            self.statuses.append(status)
        return status

    def add_app(
        self,
        app_id: str,
        public_key_pem: bytes,
        installations: dict[int, tuple[str, dict[str, str]]],
    ) -> None:
        self.apps[app_id] = App(app_id, public_key_pem, installations)

    def limit_next(self, kind: str, *, wait: int = 1) -> None:
        """``primary`` | ``secondary`` | ``429`` for the next API request."""
        with self._lock:
            self.limits.append(f"{kind}:{wait}")

    def exhaust_next(self, *, wait: int = 1) -> None:
        """The next successful answer says no request is left until ``wait`` seconds on."""
        with self._lock:
            self.exhaust.append(wait)

    def api_requests(self, path_part: str = "") -> list[Recorded]:
        return [r for r in self.requests if path_part in r.path]

    # -- handling (called from the handler thread) ------------------------------

    def now(self) -> float:
        return time.monotonic()

    def _first_sight(self, repo: str, sha: str) -> None:
        with self._lock:
            if (repo, sha) in self._seen:
                return
            self._seen.add((repo, sha))
        if self.on_new_sha is not None:
            self.on_new_sha(self, repo, sha)

    def visible_checks(self, repo: str, sha: str, latest: bool) -> list[dict[str, Any]]:
        self._first_sight(repo, sha)
        now = self.now()
        with self._lock:
            candidates = [c for c in self.checks if c.repo == repo and c.sha == sha]
        shown: list[tuple[ScriptedCheck, tuple[str, str | None]]] = []
        for check in candidates:
            state = check.state(now)
            if state is not None:
                shown.append((check, state))
        if latest:
            newest: dict[tuple[str, str], tuple[ScriptedCheck, tuple[str, str | None]]] = {}
            for check, state in shown:
                key = (check.app_slug, check.name)
                if key not in newest or newest[key][0].id < check.id:
                    newest[key] = (check, state)
            shown = list(newest.values())
        shown.sort(key=lambda pair: pair[0].id)
        return [self.check_json(check, state) for check, state in shown]

    def check_json(self, check: ScriptedCheck, state: tuple[str, str | None]) -> dict[str, Any]:
        status, conclusion = state
        owner, name = check.repo.split("/")
        base = self.api_url
        output = {
            "title": check.output.get("title"),
            "summary": check.output.get("summary"),
            "text": check.output.get("text"),
            "annotations_count": len(check.annotations) if status == "completed" else 0,
            "annotations_url": f"{base}/repos/{check.repo}/check-runs/{check.id}/annotations",
        }
        return {
            "id": check.id,
            "head_sha": check.sha,
            "node_id": f"CR_{check.id}",
            "external_id": "",
            "url": f"{base}/repos/{check.repo}/check-runs/{check.id}",
            "html_url": f"https://github.example/{owner}/{name}/runs/{check.id}",
            "details_url": f"https://github.example/{owner}/{name}/actions/runs/1/job/{check.id}",
            "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "started_at": "2026-01-01T00:00:00Z",
            "completed_at": "2026-01-01T00:01:00Z" if status == "completed" else None,
            "output": output,
            "name": check.name,
            "check_suite": {"id": 1},
            "app": {"id": 15368, "slug": check.app_slug, "name": check.app_slug},
            "pull_requests": [],
        }

    def combined(self, repo: str, sha: str) -> dict[str, Any]:
        self._first_sight(repo, sha)
        now = self.now()
        with self._lock:
            scripted = [s for s in self.statuses if s.repo == repo and s.sha == sha]
        latest: dict[str, tuple[ScriptedStatus, str]] = {}
        for status in scripted:
            state = status.state(now)
            if state is not None and (
                status.context not in latest or latest[status.context][0].id < status.id
            ):
                latest[status.context] = (status, state)
        statuses = [
            {
                "id": s.id,
                "node_id": f"S_{s.id}",
                "state": state,
                "description": s.description,
                "target_url": f"https://ci.example/{s.context}",
                "context": s.context,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            }
            for s, state in latest.values()
        ]
        states = {s["state"] for s in statuses}
        if not statuses or "pending" in states:
            overall = "pending"
        elif states & {"failure", "error"}:
            overall = "failure"
        else:
            overall = "success"
        return {
            "state": overall,
            "statuses": statuses,
            "sha": sha,
            "total_count": len(statuses),
            "repository": {"full_name": repo},
        }


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, public_key_pem: bytes, app_id: str) -> str | None:
    """None when valid, else why not (as GitHub would refuse it)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    parts = token.split(".")
    if len(parts) != 3:
        return "not a JWT"
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except ValueError:
        return "undecodable JWT"
    if header.get("alg") != "RS256":
        return "alg must be RS256"
    key = serialization.load_pem_public_key(public_key_pem)
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return "signature does not verify"
    now = time.time()
    if str(claims.get("iss")) != app_id:
        return "iss is not the app"
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        return "iat/exp missing"
    if iat > now + 5 or exp < now:
        return "'Expiration time' claim ('exp') is too far in the future or expired"
    if exp - iat > 600:
        return "'Expiration time' claim ('exp') is too far in the future"
    return None


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeGitHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- plumbing ----------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        # complete the record before any byte of the reply leaves: once the client has
        # read the reply, a test may look at the record at once
        self._recorded.status = status
        sent = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        fake = self.server_fake
        if status == 200 and not self.path.startswith("/_blob/"):
            with fake._lock:
                wait = fake.exhaust.pop(0) if fake.exhaust else None
                if wait is not None:
                    reset = int(time.time()) + wait
                    fake.limited_until = max(
                        fake.limited_until, time.monotonic() + reset - time.time()
                    )
                    sent.update({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
        self.send_response(status)
        for name, value in sent.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.server_fake
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._recorded = Recorded(
            method,
            url.path,
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            at=time.monotonic(),
        )
        if url.path.startswith("/_blob/"):
            fake.blob_requests.append(self._recorded)
            self._blob(url.path)
            return
        fake.requests.append(self._recorded)
        path = url.path
        if fake.prefix:
            graphql = fake.prefix.rsplit("/", 1)[0] + "/graphql"
            if path == graphql:
                path = "/graphql"
            elif path.startswith(fake.prefix + "/"):
                path = path[len(fake.prefix) :]
            else:
                self._send(404, {"message": "Not Found"})
                return
        with fake._lock:
            too_soon = fake.limited_until - self._recorded.at
            if too_soon > 0:
                fake.early.append(self._recorded)
            limit = fake.limits.pop(0) if fake.limits else None
            fail = fake.fail_next.pop(0) if fake.fail_next else None
        if too_soon > 0:
            self._send(
                429, {"message": "Too Many Requests"}, {"retry-after": str(math.ceil(too_soon))}
            )
            return
        if limit is not None:
            self._rate_limited(limit)
            return
        if fail is not None:
            self._send(fail, {"message": "Server Error"})
            return
        try:
            self._route(method, path, query, body)
        except _Reply as reply:
            self._send(reply.status, reply.body, reply.headers)

    def _rate_limited(self, spec: str) -> None:
        kind, _, wait = spec.partition(":")
        seconds = int(wait or 1)
        fake = self.server_fake
        if kind == "primary":
            reset = int(time.time()) + seconds
            announced = reset - time.time()
        else:
            announced = float(seconds)
        with fake._lock:
            fake.limited_until = max(fake.limited_until, time.monotonic() + announced)
        if kind == "primary":
            self._send(
                403,
                {
                    "message": "API rate limit exceeded for user ID 1.",
                    "documentation_url": "https://docs.github.com/rest/rate-limit",
                },
                {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(reset),
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-resource": "core",
                },
            )
        elif kind == "secondary":
            self._send(
                403,
                {
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                },
                {"retry-after": str(seconds)},
            )
        else:
            self._send(429, {"message": "Too Many Requests"}, {"retry-after": str(seconds)})

    def _json_get(self, body: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        etag = 'W/"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "x-ratelimit-remaining": "4999", **(extra or {})}
        if self.headers.get("If-None-Match") == etag:
            self._send(304, None, headers)
            return
        self._send(200, None, headers, raw=data)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "token") and value:
            return value.strip()
        return None

    def _require_token(self, repo: str | None = None) -> str:
        fake = self.server_fake
        token = self._token()
        if token in fake.tokens:
            return token
        minted = fake.minted.get(token or "")
        if minted is not None and not minted.revoked:
            if repo is not None and repo.split("/")[1] not in minted.repositories:
                raise _Reply(404, {"message": "Not Found"})
            return token or ""
        raise _Reply(
            401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        )

    def _page(
        self, items: list[Any], query: dict[str, list[str]]
    ) -> tuple[list[Any], dict[str, str]]:
        per_page = int((query.get("per_page") or ["30"])[0])
        page = int((query.get("page") or ["1"])[0])
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        last = max(1, -(-len(items) // per_page))
        headers: dict[str, str] = {}
        if page < last and self.server_fake.link_headers:
            base = urllib.parse.urlsplit(self.path)
            rest = {k: v[0] for k, v in query.items() if k != "page"}

            def link(n: int) -> str:
                q = urllib.parse.urlencode({**rest, "page": n})
                return f"<{self.server_fake.origin}{base.path}?{q}>"

            headers["Link"] = f'{link(page + 1)}; rel="next", {link(last)}; rel="last"'
        return chunk, headers

    # -- routes ------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        fake = self.server_fake
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/commits/([^/]+)/check-runs", path)
        if m and method == "GET":
            repo, sha = m.groups()
            self._require_token(repo)
            latest = (query.get("filter") or ["latest"])[0] == "latest" and fake.honour_filter
            runs = fake.visible_checks(repo, sha, latest)
            chunk, headers = self._page(runs, query)
            self._json_get({"total_count": len(runs), "check_runs": chunk}, headers)
            return
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/commits/([^/]+)/status", path)
        if m and method == "GET" and fake.status_endpoint:
            repo, sha = m.groups()
            self._require_token(repo)
            combined = fake.combined(repo, sha)
            chunk, headers = self._page(combined["statuses"], query)
            self._json_get({**combined, "statuses": chunk}, headers)
            return
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/check-runs/(\d+)(/annotations)?", path)
        if m and method == "GET":
            repo, ident, ann = m.groups()
            self._require_token(repo)
            check = next((c for c in fake.checks if c.id == int(ident) and c.repo == repo), None)
            state = check.state(fake.now()) if check else None
            if check is None or state is None:
                raise _Reply(404, {"message": "Not Found"})
            if ann:
                chunk, headers = self._page(check.annotations, query)
                self._json_get(chunk, headers)
            else:
                self._json_get(fake.check_json(check, state))
            return
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/jobs/(\d+)/logs", path)
        if m and method == "GET":
            repo, ident = m.groups()
            self._require_token(repo)
            check = next((c for c in fake.checks if c.id == int(ident)), None)
            if check is None or check.log is None:
                raise _Reply(404, {"message": "Not Found"})
            sig = secrets.token_hex(8)
            self._send(302, None, {"Location": f"{fake.origin}/_blob/logs/{ident}?sig={sig}"})
            return
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)", path)
        if m and method == "GET":
            self._require_token(m.group(1))
            self._json_get({"full_name": m.group(1), "default_branch": fake.default_branch})
            return
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/installation", path)
        if m and method == "GET":
            self._installation_for_repo(m.group(1))
            return
        m = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if m and method == "POST":
            self._mint(int(m.group(1)), body or {})
            return
        if path == "/installation/token" and method == "DELETE":
            token = self._token()
            minted = fake.minted.get(token or "")
            if minted is None or minted.revoked:
                raise _Reply(401, {"message": "Bad credentials"})
            minted.revoked = True
            self._send(204)
            return
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/pulls(?:/(\d+))?", path)
        if m:
            self._pulls(method, m.group(1), m.group(2), query, body)
            return
        if path == "/graphql" and method == "POST":
            self._graphql(body or {})
            return
        raise _Reply(
            404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        )

    def _blob(self, path: str) -> None:
        ident = int(path.rsplit("/", 1)[1])
        check = next((c for c in self.server_fake.checks if c.id == ident), None)
        if check is None or check.log is None:
            self._send(404, raw=b"no such blob")
            return
        self._send(200, None, {"Content-Type": "text/plain"}, raw=check.log.encode())

    def _app_from_jwt(self) -> App:
        token = self._token() or ""
        for app in self.server_fake.apps.values():
            problem = verify_jwt(token, app.public_key_pem, app.app_id)
            if problem is None:
                return app
        raise _Reply(401, {"message": "A JSON web token could not be decoded"})

    def _installation_for_repo(self, repo: str) -> None:
        app = self._app_from_jwt()
        owner = repo.split("/")[0]
        for ident, (account, _) in app.installations.items():
            if account == owner:
                self._send(
                    200, {"id": ident, "account": {"login": owner}, "app_id": int(app.app_id)}
                )
                return
        raise _Reply(404, {"message": "Not Found"})

    def _mint(self, installation: int, body: dict[str, Any]) -> None:
        app = self._app_from_jwt()
        if installation not in app.installations:
            raise _Reply(404, {"message": "Not Found"})
        owner, granted = app.installations[installation]
        wanted = dict(body.get("permissions") or granted)
        order = {"read": 1, "write": 2, "admin": 3}
        for perm, level in wanted.items():
            if order.get(granted.get(perm, ""), 0) < order.get(level, 9):
                raise _Reply(
                    422,
                    {
                        "message": f"The permissions requested are not granted to this installation: {perm}"
                    },
                )
        repos = list(body.get("repositories") or [])
        token = "ghs_" + secrets.token_hex(18)
        self.server_fake.minted[token] = MintedToken(token, installation, repos, wanted)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        self._send(
            201,
            {
                "token": token,
                "expires_at": expires,
                "permissions": wanted,
                "repository_selection": "selected" if repos else "all",
                "repositories": [{"name": r, "full_name": f"{owner}/{r}"} for r in repos],
            },
        )

    def _pulls(
        self, method: str, repo: str, number: str | None, query: dict[str, list[str]], body: Any
    ) -> None:
        fake = self.server_fake
        self._require_token(repo)
        pulls = fake.pulls.setdefault(repo, [])
        if number is None and method == "GET":
            head = (query.get("head") or [""])[0]
            state = (query.get("state") or ["open"])[0]
            found = [
                p
                for p in pulls
                if (not head or f"{p['head']['repo_owner']}:{p['head']['ref']}" == head)
                and (state == "all" or p["state"] == state)
            ]
            self._json_get([self._pull_json(repo, p) for p in found])
            return
        if number is None and method == "POST":
            for key in ("title", "head", "base"):
                if not body or not body.get(key):
                    raise _Reply(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [{"field": key, "code": "missing_field"}],
                        },
                    )
            head = str(body["head"]).split(":")[-1]
            if any(p["head"]["ref"] == head and p["state"] == "open" for p in pulls):
                raise _Reply(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"message": f"A pull request already exists for {head}."}],
                    },
                )
            pull = {
                "number": len(pulls) + 1,
                "title": body["title"],
                "body": body.get("body") or "",
                "draft": bool(body.get("draft")),
                "state": "open",
                "head": {"ref": head, "repo_owner": repo.split("/")[0]},
                "base": {"ref": body["base"]},
            }
            pulls.append(pull)
            self._send(201, self._pull_json(repo, pull))
            return
        pull_found = next((p for p in pulls if str(p["number"]) == number), None)
        if pull_found is None:
            raise _Reply(404, {"message": "Not Found"})
        if method == "PATCH":
            for key in ("title", "body", "state", "base"):
                if body and key in body:
                    if key == "base":
                        pull_found["base"] = {"ref": body[key]}
                    else:
                        pull_found[key] = body[key]
            self._send(200, self._pull_json(repo, pull_found))
            return
        if method == "GET":
            self._json_get(self._pull_json(repo, pull_found))
            return
        raise _Reply(404, {"message": "Not Found"})

    def _pull_json(self, repo: str, pull: dict[str, Any]) -> dict[str, Any]:
        return {
            "number": pull["number"],
            "node_id": f"PR_{repo}_{pull['number']}",
            "html_url": f"https://github.example/{repo}/pull/{pull['number']}",
            "url": f"{self.server_fake.api_url}/repos/{repo}/pulls/{pull['number']}",
            "title": pull["title"],
            "body": pull["body"],
            "draft": pull["draft"],
            "state": pull["state"],
            "head": {
                "ref": pull["head"]["ref"],
                "label": f"{pull['head']['repo_owner']}:{pull['head']['ref']}",
            },
            "base": {"ref": pull["base"]["ref"]},
        }

    def _graphql(self, body: dict[str, Any]) -> None:
        self._require_token()
        query = str(body.get("query") or "")
        node = (body.get("variables") or {}).get("id", "")
        for repo, pulls in self.server_fake.pulls.items():
            for pull in pulls:
                if f"PR_{repo}_{pull['number']}" == node:
                    if "markPullRequestReadyForReview" in query:
                        pull["draft"] = False
                        name = "markPullRequestReadyForReview"
                    elif "convertPullRequestToDraft" in query:
                        pull["draft"] = True
                        name = "convertPullRequestToDraft"
                    else:
                        self._send(200, {"errors": [{"message": "unsupported query"}]})
                        return
                    self._send(200, {"data": {name: {"pullRequest": {"isDraft": pull["draft"]}}}})
                    return
        self._send(
            200,
            {
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "message": f"Could not resolve to a node with the global id of '{node}'",
                    }
                ]
            },
        )


class _Reply(Exception):
    def __init__(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def rsa_key_pair() -> tuple[str, bytes]:
    """A fresh RSA key: (private PEM text, public PEM bytes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public
