"""The dashboard's HTTP server: pages, a JSON API, one event stream, the buttons.

aiohttp on a loopback address only. Every request passes ``auth.middleware``
first; every response gets the same strict headers (a Content-Security-Policy
that allows no inline script, ``nosniff``, ``no-store``). Reading runs (git,
files, locks) blocks, so it runs in the default executor, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from outloop_cli.errors import OutloopError, UsageError
from outloop_cli.safe_text import one_line
from outloop_cli.ui import actions, views
from outloop_cli.ui.auth import Guard, middleware
from outloop_cli.ui.sources import RunHandle, RunSource
from outloop_cli.ui.watch import Watcher

WATCH_INTERVAL = 0.5
_HEARTBEAT = 15.0
_STATIC = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_MAX_BODY = 16_384


def check_bind_address(host: str) -> str:
    """Only a loopback address: the dashboard can stop runs and must not face a network."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"--host {host!r} is not an IP address", hint="use 127.0.0.1 (the default) or ::1"
        ) from None
    if not address.is_loopback:
        raise UsageError(
            f"--host {host} is not a loopback address; the dashboard serves this machine only",
            hint="use 127.0.0.1 (the default); reach it from elsewhere through an SSH tunnel",
        )
    return str(address)


def _asset(name: str) -> bytes:
    return resources.files("outloop_cli.ui").joinpath("static").joinpath(name).read_bytes()


class Hub:
    """The one watcher, and every open event stream it tells."""

    def __init__(self, source: RunSource) -> None:
        self._watcher = Watcher(source)
        self._source = source
        self._queues: set[asyncio.Queue[str | None]] = set()
        self.snapshot: str = ""

    def subscribe(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self._queues.discard(queue)

    def _look(self) -> str | None:
        changes = self._watcher.look()
        if not changes and self.snapshot:
            return None
        runs = [views.run_summary(run) for run in self._source.runs()]
        payload = {"runs": runs, "changed": list(changes.changed), "removed": list(changes.removed)}
        return views.dumps(payload)

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await loop.run_in_executor(None, self._look)
            except OutloopError:
                message = None
            if message is not None:
                self.snapshot = message
                for queue in list(self._queues):
                    queue.put_nowait(message)
            await asyncio.sleep(WATCH_INTERVAL)

    def close(self) -> None:
        for queue in list(self._queues):
            queue.put_nowait(None)


GUARD = web.AppKey("guard", Guard)
HUB = web.AppKey("hub", Hub)
SOURCE = web.AppKey("source", RunSource)


async def _blocking(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=views.dumps(data), content_type="application/json", charset="utf-8"
    )


async def _find(request: web.Request) -> RunHandle:
    run_id = request.match_info["run_id"]
    run: RunHandle | None = await _blocking(request.app[SOURCE].find, run_id)
    if run is None:
        raise web.HTTPNotFound(text="no such run\n")
    return run


async def page(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    charset = None if name.endswith(".svg") else "utf-8"
    return web.Response(body=_asset(name), content_type=_STATIC[name], charset=charset)


async def session(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    repos = [one_line(str(p)) for p in request.app[SOURCE].repo_roots]
    return _json({"csrf": guard.csrf_for(request["session"]), "repos": repos})


async def runs(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    listed = await _blocking(lambda: [views.run_summary(run) for run in source.runs()])
    return _json({"runs": listed})


async def run_details(request: web.Request) -> web.Response:
    run = await _find(request)
    return _json(await _blocking(views.run_details, run))


async def iteration_diff(request: web.Request) -> web.Response:
    run = await _find(request)
    try:
        n = int(request.match_info["n"])
    except ValueError:
        raise web.HTTPNotFound() from None
    diff = await _blocking(views.iteration_diff, run, n)
    if diff is None:
        raise web.HTTPNotFound(text="no such iteration\n")
    return _json(diff)


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    queue = hub.subscribe()
    try:
        if hub.snapshot:
            await response.write(_sse("runs", hub.snapshot))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=_HEARTBEAT)
            except asyncio.TimeoutError:
                await response.write(b": still here\n\n")
                continue
            if message is None:
                break
            await response.write(_sse("runs", message))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(queue)
    return response


def _sse(event: str, data: str) -> bytes:
    # JSON has no raw newline, so one data line carries the whole message
    return f"event: {event}\ndata: {data}\n\n".encode()


async def act(request: web.Request) -> web.Response:
    run = await _find(request)
    action = request.match_info["action"]
    if request.content_length is not None and request.content_length > _MAX_BODY:
        return _json({"ok": False, "message": "request too large"}, 413)
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return _json({"ok": False, "message": "the body is not JSON"}, 400)
    if not isinstance(body, dict):
        body = {}
    text = body.get("text")
    text = text if isinstance(text, str) else ""
    # the approval request the page showed: a decision answers that one or none
    shown = body.get("request")
    request_id = shown if isinstance(shown, str) and shown else None
    calls: dict[str, Callable[[], actions.ActionResult]] = {
        "stop": lambda: actions.stop(run),
        "resume": lambda: actions.resume(run),
        "approve": lambda: actions.approve(run, text or None, request_id),
        "deny": lambda: actions.deny(run, text, request_id),
        "say": lambda: actions.say(run, text),
    }
    call = calls.get(action)
    if call is None:
        raise web.HTTPNotFound(text="no such action\n")
    try:
        result: actions.ActionResult = await _blocking(call)
    except OutloopError as exc:
        return _json({"ok": False, "message": one_line(exc.message)}, 409)
    return _json({"ok": result.ok, "message": one_line(result.message)})


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"


def build_app(source: RunSource, guard: Guard) -> web.Application:
    app = web.Application(middlewares=[middleware(guard)], client_max_size=_MAX_BODY)
    app[GUARD] = guard
    app[SOURCE] = source
    app[HUB] = Hub(source)
    app.on_response_prepare.append(_secure_headers)
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/session", session)
    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/runs/{run_id}", run_details)
    app.router.add_get("/api/runs/{run_id}/iterations/{n}/diff", iteration_diff)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/runs/{run_id}/{action}", act)
    return app


async def serve(
    source: RunSource,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    stop: asyncio.Event,
    guard: Guard | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the URL (with its token) once listening."""
    guard = guard or Guard()
    app = build_app(source, guard)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    watcher: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="pick another --port, or leave it out for a free one",
            ) from None
        bound = runner.addresses[0][1]
        guard.listen_on(host, bound)
        watcher = asyncio.create_task(app[HUB].watch())
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{bound}/?token={guard.token}")
        await stop.wait()
    finally:
        app[HUB].close()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await runner.cleanup()
