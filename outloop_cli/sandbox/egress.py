"""The egress proxy: the one way from a sandbox to a host beyond the broker.

A sandboxed run has only loopback. When its loop asks for hosts the policy
allows (``sandbox.egress``), this proxy listens on a Unix socket bound into
the sandbox and relayed there on 127.0.0.1, and the sandbox's
``HTTPS_PROXY``/``HTTP_PROXY`` point at it. It speaks the two forms package
managers and HTTP clients use:

- ``CONNECT host:port`` (HTTPS and anything over TLS): a tunnel, the bytes
  untouched;
- an absolute-form request (``GET http://host/path``): forwarded in origin
  form with ``Connection: close``, ``Proxy-*`` headers dropped.

For each connection the host and port are checked against the run's rules,
the name is resolved here, every address it resolves to is checked
(``egress_rules.address_refusal``), and the connection goes to the address
that was checked. A refusal is a ``403`` with the reason. Every connection,
allowed or refused, is one event for the audit log: host, port, address,
bytes each way. Unsetting the proxy variables gains the agent nothing: the
sandbox has no other route.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from secrets import token_hex
from typing import Any

from outloop_cli.errors import CouldNotRun
from outloop_cli.sandbox import ports
from outloop_cli.sandbox.egress_rules import (
    EgressRules,
    RuleError,
    address_refusal,
    normalize_host,
)
from outloop_cli.sandbox.handoff import ListenerHandoff
from outloop_cli.sandbox.ports import SANDBOX_EGRESS_PORT

__all__ = ["EgressProxy", "EgressService", "Resolver"]

EventSink = Callable[[dict[str, Any]], None]
Resolver = Callable[[str, int], Awaitable[list[str]]]

_MAX_HEAD = 32 * 1024
_CHUNK = 64 * 1024
_CONNECT_TIMEOUT = 15.0
# a tunnel with no byte either way for this long is closed
_IDLE_TIMEOUT = 300.0
_DROPPED = frozenset(
    {"host", "proxy-connection", "proxy-authorization", "connection", "keep-alive"}
)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressProxy:
    """``await proxy.start(socket_path)``; ``await proxy.close()``. Runs in the broker's loop."""

    def __init__(
        self, rules: EgressRules, *, on_event: EventSink, resolve: Resolver = _resolve
    ) -> None:
        self._rules = rules
        self._on_event = on_event
        self._resolve = resolve
        self._server: asyncio.base_events.Server | None = None
        self._handoff: ListenerHandoff | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, unix_path: Path, sandbox_port: int = SANDBOX_EGRESS_PORT) -> None:
        """Serve ``unix_path``; sandboxes' listeners of ``sandbox_port`` come through handoffs."""
        self._server = await asyncio.start_unix_server(
            self._accept, sock=ports.unix_listener(unix_path)
        )
        self._handoff = ListenerHandoff(sandbox_port, self._serve_listener)

    async def open_handoff(self, path: Path) -> None:
        """A handoff socket at ``path`` for one sandbox's start (``ListenerHandoff.open``)."""
        assert self._handoff is not None, "start() first"
        await self._handoff.open(path)

    async def _serve_listener(self, listener: socket.socket) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._accept, sock=listener)

    async def close(self) -> None:
        if self._handoff is not None:
            await self._handoff.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one connection -------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= ports.MAX_CONNECTIONS:
            # the runner's file descriptors are not the agent's to use up
            writer.write(ports.BUSY_RESPONSE)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        event: dict[str, Any] = {"event": "egress"}
        started = time.monotonic()
        try:
            head = await self._read_head(reader)
            method, target, version, headers = _parse_head(head)
            event["method"] = method
            host, port, path = _target(method, target)
            event.update(host=host, port=port)
            rule = self._rules.rule_for(host, port)
            if rule is None:
                raise _Refused(403, "not in the run's egress rules")
            address = await self._checked_address(host, port)
            event["address"] = address
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port), _CONNECT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError) as exc:
                raise _Refused(502, f"could not connect: {type(exc).__name__}") from None
        except _Refused as refused:
            event.update(decision="refused", reason=refused.reason)
            await _answer(writer, refused.status, refused.reason)
            self._on_event(event)
            return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        event["decision"] = "allowed"
        up = down = 0
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            else:
                lines = [f"{method} {path} {version}", f"Host: {_authority(host, port)}"]
                # the Host the agent wrote could name another site served at the same
                # address (virtual hosting): the upstream is told the host that was checked
                lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _DROPPED]
                lines.append("Connection: close")
                forwarded = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
                upstream_writer.write(forwarded)
                up += len(forwarded)
            sent, received = await asyncio.gather(
                _pump(reader, upstream_writer), _pump(upstream_reader, writer)
            )
            up += sent
            down += received
        finally:
            upstream_writer.close()
            event.update(bytes_up=up, bytes_down=down, seconds=round(time.monotonic() - started, 3))
            self._on_event(event)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _CONNECT_TIMEOUT)
        except asyncio.LimitOverrunError:
            raise _Refused(431, "request head too large") from None
        except asyncio.TimeoutError:
            raise _Refused(408, "no request head") from None
        if len(head) > _MAX_HEAD:
            raise _Refused(431, "request head too large")
        return head

    async def _checked_address(self, host: str, port: int) -> str:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                resolved = await asyncio.wait_for(self._resolve(host, port), _CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                raise _Refused(502, "the name does not resolve") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
        if not addresses:
            raise _Refused(502, "the name does not resolve")
        # every address must pass: a name that answers public and loopback in turn
        # (rebinding) is refused whichever one a connection would take
        for address in addresses:
            why = address_refusal(address, self._rules.reach_private)
            if why is not None:
                raise _Refused(403, f"{host} {why} ({address})")
        return str(addresses[0])


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _Refused(400, "bad request head") from None
    request_line, *header_lines = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Refused(400, "bad request line")
    method, target, version = parts
    if not method.isalpha() or not method.isupper():
        raise _Refused(400, "bad method")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise _Refused(400, "bad header line")
        headers.append((name, value.strip()))
    return method, target, version, headers


def _target(method: str, target: str) -> tuple[str, int, str]:
    """``(host, port, origin-form path)`` of a CONNECT or absolute-form request."""
    try:
        if method == "CONNECT":
            host, sep, port_text = target.rpartition(":")
            if not sep or not port_text.isdigit():
                raise _Refused(400, "CONNECT needs host:port")
            return normalize_host(host), _port(port_text), ""
        if target.startswith("https://"):
            raise _Refused(400, "use CONNECT for https")
        if not target.startswith("http://"):
            raise _Refused(400, "not a proxy request (absolute http:// URL or CONNECT)")
        rest = target[len("http://") :]
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            raise _Refused(400, "user information in the URL")
        host, sep, port_text = authority.rpartition(":")
        if not sep or "]" in port_text:
            host, port_text = authority, "80"
        if not port_text.isdigit():
            raise _Refused(400, "bad port")
        return normalize_host(host), _port(port_text), "/" + path if slash else "/"
    except RuleError as exc:
        raise _Refused(400, exc.message) from None


def _authority(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 80 else f"{shown}:{port}"


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise _Refused(400, "port out of range")
    return port


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = f"outloop egress proxy: refused: {reason}\n".encode()
    phrase = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout"}.get(status, "Error")
    writer.write(
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    try:
        await writer.drain()
    except ConnectionError:
        pass


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    total = 0
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(_CHUNK), _IDLE_TIMEOUT)
            if not chunk:
                break
            writer.write(chunk)
            total += len(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass
    return total


class EgressService:
    """The egress proxy on an event loop thread of its own, for as long as the run.

    ``with EgressService.start(rules, directory, on_event) as egress:`` then bind
    ``egress.socket_path`` into the sandbox. ``on_event`` is called on that
    thread, once per connection.
    """

    def __init__(self, proxy: EgressProxy, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._proxy = proxy
        # the one directory every view hides, as the broker's are
        self._handoff_dir = ports.ensure_handoff_home()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="outloop-egress", daemon=True
        )

    @classmethod
    def start(
        cls,
        rules: EgressRules,
        directory: Path,
        on_event: EventSink,
        *,
        resolve: Resolver = _resolve,
        sandbox_port: int = SANDBOX_EGRESS_PORT,
    ) -> EgressService:
        service = cls(
            EgressProxy(rules, on_event=on_event, resolve=resolve), directory / "egress.sock"
        )
        service._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(
                service._proxy.start(service.socket_path, sandbox_port), service._loop
            ).result(30)
        except BaseException:
            service.close()
            raise
        return service

    def __enter__(self) -> EgressService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._proxy.close(), self._loop).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()
        # the handoff sockets went with the proxy; their directory is every run's
        self.socket_path.unlink(missing_ok=True)

    def open_handoff(self) -> Path:
        """A handoff socket for one sandbox's start (``sandbox/handoff.py``); where it is.

        In the directory every sandbox's view hides (``ports.handoff_home``), at
        a name nobody can guess in advance.
        """
        if not self._thread.is_alive() or not self._loop.is_running():
            raise CouldNotRun(
                "the egress proxy has stopped: no sandbox can reach it",
                hint="start the run again (`outloop resume`)",
            )
        path = self._handoff_dir / token_hex(ports.HANDOFF_NAME_BYTES)
        return ports.open_handoff_on(self._loop, self._proxy.open_handoff(path), path)
