"""A sandbox's listening sockets, handed to the server outside that answers them.

The sandbox has a network namespace of its own. Its first process (``relay.py``)
binds ``127.0.0.1:PORT`` inside for each way out (the access proxy, the egress
proxy) and passes the listening socket over a Unix socket to the server the
port belongs to (``SCM_RIGHTS``). From then on that server accepts the agent's
connections itself: a socket keeps the namespace it was made in, so the server
talks to the agent over the sandbox's loopback, and no process inside has to
carry the bytes across. Before this, the relay copied every byte from a TCP
socket to a Unix socket and back, in Python: a fourth process on the path of a
streamed response, and a third of the CPU it cost (docs/benchmarks.md).

Each sandbox start gets a handoff socket of its own (``open``), at a random
name in the one directory of the user's handoff sockets
(``ports.handoff_home``), which every sandbox's view hides (``bwrap.hide``
covers it wherever a bind above it would show it); only the bind of that one
file shows it, inside that one sandbox. Its first connection is
taken, the socket is then unlinked and closed, and only then is the
connection answered: the relay connects before it starts the agent and waits
for that answer, so by the time the agent runs, nothing listens there, and a
connection it tries is refused by the kernel. (A socket nobody connects to
goes after ``window`` seconds, or when the server stops.)

The rest is defence in depth, should anything but the relay get there first.
Whatever comes in is checked as an attacker's: one file descriptor, a TCP
socket that listens, bound to ``127.0.0.1`` and to the port this server owns.
Anything else is closed unused and answered ``no``. A socket bound to a path
(a Unix socket the host could reach), a connected socket, a pipe: none is ever
served. The relay's port is bound before the agent starts, so the agent cannot
make a second listener on it. The relay keeps its connection open for as long
as the sandbox lives; when it closes (the sandbox's processes are gone), the
listener is closed, and with it the last hold on the sandbox's network.
Handoffs in progress are capped, each must arrive within ``timeout`` seconds,
and a connection that holds a listener waits on nothing but its own end.
Nothing a sender could reach is closed on the server's thread (the broker's
event loop). The last close of a socket it set to linger, with data it cannot
send, waits in ``close()`` for as long as it chose; so does the last close of a
Unix socket that holds such a socket queued, in a message behind the first or
inside a socketpair it sent, however deep. So the handoff connection, every
descriptor it carried and every refused listener are closed together, by one
thread for the connection, lingering switched off where that helps; the
connection keeps its place (pending, or served) until that close is done, so
closes that hang are as many as the caps allow, and at the cap the next one is
not accepted at all: it waits in the kernel's backlog, holding none of the
runner's descriptors. A Unix socket among what is closed is emptied first
(what it holds taken out and closed the same way, within a budget), so a
nested lingering socket does not make even that thread wait; and a handoff
socket, with what waits in its backlog, is closed the same way. A listener
already set to linger, or of another protocol on the same port space (MPTCP,
SCTP), is refused, and at most ``max_served`` are served at once.

The wire: the relay sends ``outloop-listener PORT\\n`` with the socket attached;
the server answers ``ok\\n`` or ``no REASON\\n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from outloop_cli.sandbox import ports

Serve = Callable[[socket.socket], Awaitable[asyncio.AbstractServer]]

GREETING = b"outloop-listener"
_MAX_MESSAGE = 64
# SCM_MAX_FD: the most one message can carry, so the kernel never drops (closes) any
_MAX_FDS = 253
_NO_LINGER = struct.pack("ii", 0, 0)


class HandoffRefused(Exception):
    """What was handed over is not this server's listener; the reason goes back to the sender."""


class ListenerHandoff:
    """Takes the listening socket for ``port`` from a sandbox and serves it with ``serve``."""

    def __init__(
        self,
        port: int,
        serve: Serve,
        *,
        max_pending: int = 8,
        max_served: int = 8,
        timeout: float = 10.0,
        window: float = 60.0,
    ) -> None:
        self.port = port
        self._serve = serve
        self._max_pending = max_pending
        self._max_served = max_served
        self._timeout = timeout
        self._window = window
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        # connections accepted and not yet served or closed (their close may be under way)
        self._pending = 0
        self._serving = 0
        self.served = 0

    async def open(self, path: Path) -> None:
        """A handoff socket at ``path`` for one sandbox's start: one connection, then it is gone.

        ``path`` must be in a directory no sandbox shows (the bind of the socket
        file is the sandbox's only way to it). The sandbox's first process
        connects before it starts the agent; the socket is unlinked and closed
        as soon as that connection is accepted, and only once it is closed is
        the connection answered, so by the time the agent runs nothing listens
        there. Without a connection within ``window`` seconds it goes too.
        """
        listener = ports.unix_listener(path, backlog=1, takes_descriptors=True)
        self._track(asyncio.get_running_loop().create_task(self._accept_once(listener, path)))

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_once(self, listener: socket.socket, path: Path) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        # not asyncio.wait_for: up to Python 3.11 it can swallow close()'s cancel once
        # the accept is done, and the task would go on serving (the review's finding)
        window = loop.call_later(self._window, expire)
        conn: socket.socket | None = None
        closed = loop.create_future()
        try:
            conn = await self._accept_with_room(listener)
        except asyncio.CancelledError:
            if not expired:
                raise
            # the window passed: this cancel was its own
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
        except OSError:
            pass
        finally:
            window.cancel()
            # nobody connects after the first: gone by name, then closed, backlog and
            # all, off the loop (whatever waits in it is closed unread)
            with contextlib.suppress(OSError):
                path.unlink()
            _close_elsewhere(loop, [listener], lambda: _set_once(closed))
        if conn is None:
            return
        try:
            # "ok" starts the agent: it must find nothing listening
            await closed
        except BaseException:
            _close_elsewhere(loop, [conn], self._release)
            raise
        await self._take(conn)

    async def _accept_with_room(self, listener: socket.socket) -> socket.socket:
        """The one connection, once one waits and there is room for it; its place taken.

        Nothing is held while nobody connects (a socket whose relay never came
        takes no place from the others). At the cap, the connection waits in
        the kernel's backlog, unaccepted: accepting it only to close it would
        close what was queued on it here. Between the last look at the cap and
        the count, nothing awaits, so the sockets together never pass it. The
        place is the connection's from then on (``_take`` lets go of it).
        """
        loop = asyncio.get_running_loop()
        while True:
            await _readable(loop, listener)
            while self._pending >= self._max_pending:
                self._room.clear()
                await self._room.wait()
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            self._pending += 1
            conn.setblocking(False)
            _urgent_inline(conn)
            return conn

    def _release(self) -> None:
        self._pending -= 1
        self._room.set()

    async def _take(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        serving = False
        # everything this connection brought, closed together at its end by one thread
        # of its own; its place (pending or served) is kept until that close is done, so
        # a close that hangs keeps it, and hung closes are bounded by the caps
        doomed: list[socket.socket | int] = []
        try:
            try:
                listener = await asyncio.wait_for(self._receive(conn, doomed), self._timeout)
            except HandoffRefused as refused:
                await loop.sock_sendall(conn, b"no " + str(refused).encode() + b"\n")
                return
            try:
                server = await self._serve(listener)
            except BaseException:
                doomed.append(listener)
                raise
            try:
                self.served += 1
                self._serving += 1
                serving = True
                self._release()
                # nothing more is taken on it: what was queued before is closed off the loop
                ports.refuse_descriptors(conn)
                await loop.sock_sendall(conn, b"ok\n")
                # the sender holds this connection for as long as its sandbox lives
                while True:
                    message, fds, _ = await self._read(conn)
                    doomed.extend(fds)
                    if not message:
                        break
            finally:
                server.close()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            doomed.append(conn)
            _close_elsewhere(loop, doomed, self._stop_serving if serving else self._release)

    def _stop_serving(self) -> None:
        self._serving -= 1

    async def _read(self, conn: socket.socket) -> tuple[bytes, list[int], int]:
        """One read; every descriptor it carries (all of them: none left for the kernel) is ours."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                message, fds, flags, _ = socket.recv_fds(conn, _MAX_MESSAGE, _MAX_FDS)
                break
            except BlockingIOError:
                await _readable(loop, conn)
        for fd in fds:
            os.set_inheritable(fd, False)
        return message, fds, flags

    async def _receive(
        self, conn: socket.socket, doomed: list[socket.socket | int]
    ) -> socket.socket:
        message, fds, flags = await self._read(conn)
        try:
            if flags & socket.MSG_CTRUNC or len(fds) != 1:
                raise HandoffRefused("one listening socket, and only one, is taken")
            if message != GREETING + b" %d\n" % self.port:
                raise HandoffRefused(f"this server takes 127.0.0.1:{self.port} only")
            if self._serving >= self._max_served:
                raise HandoffRefused(f"{self._max_served} listeners are served already")
            return self._check(fds.pop(), doomed)
        finally:
            doomed.extend(fds)

    def _check(self, fd: int, doomed: list[socket.socket | int]) -> socket.socket:
        try:
            listener = socket.socket(fileno=fd)
        except OSError:
            doomed.append(fd)
            raise HandoffRefused("not a socket") from None
        try:
            if (
                listener.family != socket.AF_INET
                or listener.type != socket.SOCK_STREAM
                or listener.proto != socket.IPPROTO_TCP
            ):
                # MPTCP and SCTP are SOCK_STREAM too, with ports of their own
                raise HandoffRefused("not a TCP socket")
            if not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise HandoffRefused("not listening")
            if listener.getsockname() != ("127.0.0.1", self.port):
                raise HandoffRefused(f"not bound to 127.0.0.1:{self.port}")
            on, _ = struct.unpack("ii", listener.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
            if on:
                # every connection accepted from it would linger on close, in the server's thread
                raise HandoffRefused("set to linger")
        except BaseException:
            doomed.append(listener)
            raise
        return listener


def _close_elsewhere(
    loop: asyncio.AbstractEventLoop,
    items: Sequence[socket.socket | int],
    done: Callable[[], None],
) -> None:
    """Close what the agent could reach, in a thread of its own (see the module's docstring).

    ``done`` is called on the loop once everything is closed. Never on the
    loop's own thread: the last close of a socket can wait, and so can the last
    close of a Unix socket with a lingering one queued in it, however deep.
    """
    taken = list(items)

    def close_all() -> None:
        for item in taken:
            _close_now(item)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to tell
            loop.call_soon_threadsafe(done)

    threading.Thread(target=close_all, name="outloop-handoff-close", daemon=True).start()


def _urgent_inline(conn: socket.socket) -> None:
    """Out-of-band bytes read inline, before the first read.

    Else such a byte is never read but thrown away inside ``recvmsg`` (the
    kernel's ``manage_oob``), with the descriptors it carries; inline, they are
    ours, closed like any other. Defence in depth: on this machine's kernel
    (6.18) no test could make that drop wait in a thread of the server's.
    """
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)


# reads (and descriptors taken) the closing of one connection may spend emptying what it
# holds: an end the agent still writes to must not keep a closing thread reading for ever
_EMPTY_BUDGET = 1024


class _Budget:
    def __init__(self) -> None:
        self.left = _EMPTY_BUDGET


def _close_now(item: socket.socket | int, budget: _Budget | None = None) -> None:
    """Close ``item`` without waiting where that can be helped.

    A Unix socket is emptied first: the descriptors queued in it (a socketpair's
    end can hold a lingering socket, and its unread peer behind it) are taken
    out and closed the same way, lingering off, so its own close releases
    nothing that waits; a listener's backlog likewise. Within ``budget``: past
    it, what is left is closed as it is (here, off the loop, where a wait holds
    this thread alone).
    """
    budget = budget if budget is not None else _Budget()
    if isinstance(item, socket.socket):
        sock = item
    else:
        try:
            sock = socket.socket(fileno=item)
        except OSError:
            # not a socket: a pipe, a file
            os.close(item)
            return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
    if sock.family == socket.AF_UNIX:
        with contextlib.suppress(OSError):
            _empty(sock, budget)
    sock.close()


def _empty(sock: socket.socket, budget: _Budget) -> None:
    sock.setblocking(False)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        while budget.left > 0:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return
            budget.left -= 1
            _close_now(conn, budget)
        return
    with contextlib.suppress(OSError):
        _urgent_inline(sock)
    while budget.left > 0:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 65536, _MAX_FDS)
        except BlockingIOError:
            return
        budget.left -= max(1, len(fds))
        for fd in fds:
            _close_now(fd, budget)
        if not message and not fds:
            return


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), _set_once, ready)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
