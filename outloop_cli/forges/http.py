"""A small REST client for forge APIs (GitHub, GitLab): the one place outloop speaks HTTP to them.

Polite by construction, because a loop polls for a long time:

- conditional GETs: the last ``ETag`` of every URL is sent back as
  ``If-None-Match``; a ``304`` costs GitHub no rate limit and returns the
  body we already have;
- ``Retry-After`` and ``X-RateLimit-Remaining: 0`` / ``X-RateLimit-Reset``
  (GitLab: ``RateLimit-Reset``) are obeyed on ``403``/``429``, and the reset
  of an exhausted limit on any answer; the wait holds every request to that
  API, from any thread or client of the process (``rate_gate.py``), not only
  the refused one; a wait that would run past the caller's deadline fails at
  once instead of sleeping, and sends nothing;
- ``5xx`` answers and broken connections are retried with exponential
  backoff and jitter;
- pagination follows ``Link: <…>; rel="next"``.

The credential is sent with ``add_unredirected_header``: a redirect (GitHub
sends log downloads to a pre-signed URL on another host) never carries it.
Nothing here prints or logs; errors name the method, path and status, never
the token.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from outloop_cli import __version__
from outloop_cli.errors import CouldNotRun
from outloop_cli.forges.rate_gate import RateGate, gate_for

__all__ = [
    "ForgeAuthError",
    "ForgeClient",
    "ForgeError",
    "RateLimited",
    "Response",
    "next_link",
]

USER_AGENT = f"outloop/{__version__}"
# GitHub asks clients without rate-limit headers on a secondary limit to wait a minute
DEFAULT_RATE_LIMIT_WAIT = 60.0
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?([^";]+)"?')


class ForgeError(CouldNotRun):
    """The forge answered with an error we cannot work around."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class ForgeAuthError(ForgeError):
    """401, or a 403 that is not a rate limit: the token is wrong or lacks a permission."""


class RateLimited(ForgeError):
    """The forge asked us to wait longer than the caller's deadline allows."""

    def __init__(self, message: str, *, wait: float) -> None:
        super().__init__(
            message,
            status=429,
            hint="wait for the rate limit to reset, or use a token with a higher limit",
        )
        self.wait = wait


@dataclass(frozen=True)
class Response:
    """One HTTP response from a forge API."""

    status: int
    # header names lower-cased
    headers: Mapping[str, str]
    body: bytes
    url: str
    # True when the server said 304 and the body is the one we kept
    from_cache: bool = False

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def next_url(self) -> str | None:
        return next_link(self.header("link"))


def next_link(link_header: str | None) -> str | None:
    if not link_header:
        return None
    for url, rel in _LINK_RE.findall(link_header):
        if "next" in rel.split():
            return str(url)
    return None


AuthHeaders = Callable[[], Mapping[str, str]]


def _no_auth() -> Mapping[str, str]:
    return {}


@dataclass
class _CacheEntry:
    """A kept response and the ETag to revalidate it with."""

    etag: str
    response: Response


@dataclass
class RequestStats:
    """Counts for tests and diagnostics: how polite the polling was."""

    requests: int = 0
    not_modified: int = 0
    rate_limited: int = 0
    retried: int = 0
    waited: float = 0.0
    by_path: dict[str, int] = field(default_factory=dict)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are followed only where we ask for it (``follow_redirects``)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ForgeClient:
    """Talks to one API base URL (``https://api.github.com``, ``…/api/v3``, ``…/api/v4``)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthHeaders = _no_auth,
        accept: str = "application/json",
        extra_headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        rate_limit_wait: float = DEFAULT_RATE_LIMIT_WAIT,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        gate: RateGate | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.gate = gate if gate is not None else gate_for(self.base_url)
        self.auth = auth
        self.accept = accept
        self.extra_headers = dict(extra_headers or {})
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.rate_limit_wait = rate_limit_wait
        self.cancel = cancel
        self.clock = clock
        # deadline (on ``clock``) past which no wait is started; set per operation
        self.deadline: float | None = None
        self.stats = RequestStats()
        self._etags: dict[str, _CacheEntry] = {}
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._follow = urllib.request.build_opener()

    # -- public ---------------------------------------------------------------

    def with_auth(self, headers: Mapping[str, str]) -> ForgeClient:
        """The same client settings with fixed credentials (an App JWT, a token to revoke)."""
        fixed = dict(headers)
        other = ForgeClient(
            self.base_url,
            auth=lambda: fixed,
            accept=self.accept,
            extra_headers=self.extra_headers,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
            rate_limit_wait=self.rate_limit_wait,
            cancel=self.cancel,
            clock=self.clock,
            gate=self.gate,
        )
        other.deadline = self.deadline
        other.stats = self.stats
        return other

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        if path.startswith(("http://", "https://")):
            full = path
        else:
            full = self.base_url + "/" + path.lstrip("/")
        if params:
            query = urllib.parse.urlencode(
                [(k, str(v)) for k, v in params.items() if v is not None]
            )
            full += ("&" if "?" in full else "?") + query
        return full

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        conditional: bool = False,
        accept: str | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        follow_redirects: bool = False,
        auth: bool = True,
    ) -> Response:
        """One request with retries; raises ``ForgeError`` unless the status is in ``ok``."""
        url = self.url(path, params)
        data = None if json_body is None else json.dumps(json_body).encode()
        attempt = 0
        while True:
            response = self._send(
                method,
                url,
                data=data,
                conditional=conditional and method == "GET",
                accept=accept,
                follow=follow_redirects,
                auth=auth,
            )
            if response is None:
                # connection failed: counts as a retryable server error
                wait = self._backoff_delay(attempt)
                attempt += 1
                if attempt > self.max_retries:
                    raise ForgeError(
                        f"{method} {_display(url)}: the server could not be reached "
                        f"after {attempt} attempts",
                        hint="check the API URL (`goal.ci.api_url` or $GITHUB_API_URL) and the network",
                    )
                self._wait(wait, f"{method} {_display(url)}: connection failed")
                self.stats.retried += 1
                continue
            if response.status in ok:
                return response
            wait_for = self._rate_limit_delay(response)
            if wait_for is not None:
                self.stats.rate_limited += 1
                attempt += 1
                # with a deadline, ``_wait`` bounds the waiting; without one, the count does
                if self.deadline is None and attempt > self.max_retries + 2:
                    raise RateLimited(
                        f"{method} {_display(url)}: still rate limited after {attempt} waits",
                        wait=wait_for,
                    )
                # the next ``_send`` (of this request or any other) waits at the gate
                self.gate.hold(wait_for)
                continue
            if response.status >= 500 and attempt < self.max_retries:
                asked = _parse_retry_after(response.header("retry-after") or "", self.clock())
                self._wait(
                    max(self._backoff_delay(attempt), asked or 0.0), f"{method} {_display(url)}"
                )
                attempt += 1
                self.stats.retried += 1
                continue
            raise self._error(method, url, response)

    def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, *, conditional: bool = True
    ) -> Any:
        return self.request("GET", path, params=params, conditional=conditional).json()

    def pages(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        max_pages: int = 50,
        conditional: bool = True,
    ) -> Iterator[Response]:
        """Every page of a list, following ``Link: rel="next"``."""
        response = self.request("GET", path, params=params, conditional=conditional)
        yield response
        seen = 1
        next_url = response.next_url
        while next_url and seen < max_pages:
            response = self.request("GET", next_url, conditional=conditional)
            yield response
            seen += 1
            next_url = response.next_url

    # -- internals ------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None,
        conditional: bool,
        accept: str | None,
        follow: bool,
        auth: bool,
    ) -> Response | None:
        self._wait_at_gate(f"{method} {_display(url)}")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", accept or self.accept)
        request.add_header("User-Agent", USER_AGENT)
        for name, value in self.extra_headers.items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            for name, value in self.auth().items():
                # unredirected: never forwarded to wherever a redirect points
                request.add_unredirected_header(name, value)
        cached = self._etags.get(url) if conditional else None
        if cached is not None:
            request.add_header("If-None-Match", cached.etag)
        self.stats.requests += 1
        key = urllib.parse.urlsplit(url).path
        self.stats.by_path[key] = self.stats.by_path.get(key, 0) + 1
        opener = self._follow if follow else self._opener
        try:
            with opener.open(request, timeout=self.timeout) as raw:
                response = Response(raw.status, _headers(raw.headers), raw.read(), url=raw.geturl())
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            response = Response(exc.code, _headers(exc.headers), body, url=url)
        except (urllib.error.URLError, OSError, TimeoutError):
            return None
        if response.status == 304 and cached is not None:
            self.stats.not_modified += 1
            return Response(
                cached.response.status,
                cached.response.headers,
                cached.response.body,
                url=url,
                from_cache=True,
            )
        exhausted = self._exhausted_for(response)
        if exhausted is not None:
            self.gate.hold(exhausted)
        etag = response.header("etag")
        if conditional and etag and response.status == 200:
            with self._lock:
                self._etags[url] = _CacheEntry(etag, response)
        return response

    def _rate_limit_delay(self, response: Response) -> float | None:
        """Seconds to wait when ``response`` is a rate limit, else None."""
        if response.status not in (403, 429):
            return None
        retry_after = response.header("retry-after")
        if retry_after is not None:
            seconds = _parse_retry_after(retry_after, self.clock())
            if seconds is not None:
                return max(0.0, seconds)
        remaining = response.header("x-ratelimit-remaining") or response.header(
            "ratelimit-remaining"
        )
        reset = response.header("x-ratelimit-reset") or response.header("ratelimit-reset")
        if remaining is not None and remaining.strip() == "0":
            if reset is not None and reset.strip().isdigit():
                return max(0.0, int(reset) - self.clock()) + 1.0
            return self.rate_limit_wait
        if response.status == 429:
            return self.rate_limit_wait
        # GitHub's secondary limit: 403 whose message says so, without headers
        if b"secondary rate limit" in response.body.lower():
            return self.rate_limit_wait
        return None

    def _exhausted_for(self, response: Response) -> float | None:
        """Seconds to the reset when an answer (even a 200) says no request is left."""
        remaining = response.header("x-ratelimit-remaining") or response.header(
            "ratelimit-remaining"
        )
        if remaining is None or remaining.strip() != "0" or response.status in (403, 429):
            return None
        reset = response.header("x-ratelimit-reset") or response.header("ratelimit-reset")
        if reset is not None and reset.strip().isdigit():
            return max(0.0, int(reset) - self.clock()) + 1.0
        return None

    def _wait_at_gate(self, what: str) -> None:
        """Wait until the forge's last rate limit has passed, before sending anything."""
        while True:
            delay = self.gate.delay()
            if delay <= 0:
                return
            self._wait(delay, f"{what}: rate limited")

    def _backoff_delay(self, attempt: int) -> float:
        base: float = self.backoff * (2**attempt)
        return float(base * (0.5 + random.random() / 2))

    def _wait(self, seconds: float, what: str) -> None:
        if self.deadline is not None and self.clock() + seconds > self.deadline:
            raise RateLimited(
                f"{what}: the server asked to wait {seconds:.0f}s, past the time left",
                wait=seconds,
            )
        self.stats.waited += seconds
        if self.cancel is not None:
            if self.cancel.wait(seconds):
                raise ForgeError(f"{what}: cancelled while waiting")
        else:
            time.sleep(seconds)

    def _error(self, method: str, url: str, response: Response) -> ForgeError:
        message = _api_message(response)
        where = f"{method} {_display(url)}"
        if response.status == 401:
            return ForgeAuthError(
                f"{where}: 401 unauthorized{message}",
                status=401,
                hint="the token is missing, wrong or expired; store a new one with `outloop secrets set`",
            )
        if response.status == 403:
            return ForgeAuthError(
                f"{where}: 403 forbidden{message}",
                status=403,
                hint="the token lacks a permission this needs (see the docs of the CI goal)",
            )
        if response.status == 404:
            return ForgeError(
                f"{where}: 404 not found{message}",
                status=404,
                hint="check `goal.ci.repo` and `api_url`; a private repository also answers 404 "
                "to a token that cannot see it",
            )
        return ForgeError(f"{where}: HTTP {response.status}{message}", status=response.status)


def _headers(message: Message | None) -> dict[str, str]:
    if message is None:
        return {}
    headers: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _parse_retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - now


def _api_message(response: Response) -> str:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict):
        text = data.get("message") or data.get("error") or ""
        if isinstance(text, (dict, list)):
            text = json.dumps(text)
        errors = data.get("errors")
        if errors:
            text = f"{text} {json.dumps(errors)[:300]}"
        return f": {str(text)[:300]}" if text else ""
    return ""


def _display(url: str) -> str:
    """The URL without its query's values (they may carry names, never secrets, but keep it short)."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query and len(parts.query) < 80 else "")
