"""Listening sockets handed from a sandbox to the server that answers them (sandbox/handoff.py).

The server side runs on an event loop of its own, as in the broker; the
sending side is ``relay.hand_over``, the code the sandbox's first process
runs. What the agent could send instead (it can reach the Unix socket too) is
refused, closed and never served.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.sandbox import handoff, relay
from outloop_cli.sandbox.handoff import GREETING, ListenerHandoff
from tests.support.handoff_controls import accept_every

RELAY = Path(relay.__file__)


class _Loop:
    """An event loop on a thread, as the broker runs one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    writer.write(b"served:" + data)
    await writer.drain()
    writer.close()


class _Server:
    """A ListenerHandoff whose listeners are served with an echo server."""

    def __init__(self, loop: _Loop, path: Path, port: int, **options: Any) -> None:
        self._base = path
        self._opened = 0
        self.servers: list[asyncio.AbstractServer] = []

        async def serve(listener: socket.socket) -> asyncio.AbstractServer:
            server = await asyncio.start_server(_echo, sock=listener)
            self.servers.append(server)
            return server

        self.handoff = ListenerHandoff(port, serve, **options)
        self._loop = loop

    @property
    def path(self) -> Path:
        """A handoff socket opened anew, as for each sandbox's start: one connection each."""
        self._opened += 1
        path = self._base.with_name(f"{self._base.stem}-{self._opened}{self._base.suffix}")
        self._loop.run(self.handoff.open(path))
        return path

    def close(self) -> None:
        self._loop.run(self.handoff.close())


@pytest.fixture
def event_loop_thread() -> Iterator[_Loop]:
    loop = _Loop()
    yield loop
    loop.stop()


def _free_port(*, besides: int = 0) -> int:
    """A port nothing listens on; never ``besides`` (a port a test has taken, unbound)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != besides:
            return port


# Multipath TCP: SOCK_STREAM on AF_INET too, and a port space of its own
_IPPROTO_MPTCP = 262


def _listener(
    port: int, host: str = "127.0.0.1", proto: int = 0, *, reuse_port: bool = False
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    # as relay.py binds it: a port whose last connections linger in TIME_WAIT binds
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # one port, several listeners: as many sandboxes, each its own network, would have
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(8)
    return sock


def _ask(sock: socket.socket, data: bytes = b"hi") -> bytes:
    sock.settimeout(10)
    sock.sendall(data)
    answer = b""
    while more := sock.recv(100):
        answer += more
    return answer


def _send(path: Path, message: bytes, fds: list[int]) -> bytes:
    """What an agent can do: its own message and descriptors; the server's answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        socket.send_fds(conn, [message], fds)
        return conn.recv(200)


def _alias(path: Path) -> Path:
    """A second name for the socket at ``path``, as the bind mount into a sandbox is.

    A bind mount (like a hard link) reaches the socket's inode, not its name:
    unlinking the name does not take it from a sandbox. Only closing it does.
    """
    alias = path.with_name(path.name + ".bound")
    os.link(path, alias)
    return alias


def _refused(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return True
    return False


def _gone(path: Path, bound: Path) -> bool:
    deadline = time.monotonic() + 10
    # closed off the loop, a moment after the name goes
    while not _refused(bound) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not path.exists() and _refused(bound)


@pytest.mark.parametrize("control", [False, True])
def test_a_handoff_socket_takes_its_first_connection_and_is_gone(
    control: bool, tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay connects before the agent runs; after it, the agent finds nothing there.

    The control keeps accepting on it, as the shared handoff socket of before
    did: the agent's connection is taken, and what it sends is read.
    """
    if control:
        monkeypatch.setattr(ListenerHandoff, "_accept_once", accept_every)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    path = server.path
    bound = _alias(path)
    with _listener(port) as listener:
        held = relay.hand_over(listener, str(path), port)
    try:
        if control:
            assert _send(bound, GREETING + b" %d\n" % port, []).startswith(b"no ")
        else:
            # at once: the answer the relay waits for (before it starts the agent)
            # comes only once the socket is closed
            assert not path.exists()
            assert _refused(bound)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert _ask(client) == b"served:hi"
    finally:
        held.close()
        server.close()


def _slow_listener_close(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Each handoff socket's close held ``seconds`` (its thread sleeps first)."""
    closing = handoff._close_now

    def slow_close(item: socket.socket | int, budget: Any = None) -> None:
        if isinstance(item, socket.socket) and item.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                if item.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    time.sleep(seconds)
        closing(item, budget)

    monkeypatch.setattr(handoff, "_close_now", slow_close)


def test_the_relay_is_answered_only_once_its_handoff_socket_is_closed(
    tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer starts the agent: a close still under way (here, held 0.5 s) is awaited."""
    _slow_listener_close(monkeypatch, 0.5)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    path = server.path
    bound = _alias(path)
    started = time.monotonic()
    with _listener(port) as listener:
        held = relay.hand_over(listener, str(path), port)
    try:
        assert time.monotonic() - started >= 0.5
        assert _refused(bound)
    finally:
        held.close()
        server.close()


def test_a_handoff_socket_nobody_connects_to_takes_no_place(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    """Starts whose relay never came (bubblewrap failed) must not fill the cap for the next."""
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, max_pending=2)
    unused = [server.path for _ in range(4)]
    try:
        with _listener(port) as listener:
            held = relay.hand_over(listener, str(server.path), port, timeout=5)
        held.close()
        assert server.handoff.served == 1
        assert all(path.exists() for path in unused)
    finally:
        server.close()


def test_stopping_the_server_right_after_the_accept_ends_it(
    tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that comes just after the connection is taken is not lost: the handoff ends,
    unserved, its place given back (asyncio.wait_for up to Python 3.11 could swallow it,
    and the server went on serving what the sandbox held). The socket's close is held,
    so the cancel always comes before the answer."""
    _slow_listener_close(monkeypatch, 0.5)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    path = server.path
    [task] = server.handoff._tasks

    async def cancel_once_taken() -> None:
        while server.handoff._pending == 0:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with _listener(port) as listener, socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(path))
        socket.send_fds(conn, [GREETING + b" %d\n" % port], [listener.fileno()])
        event_loop_thread.run(cancel_once_taken(), timeout=5)
        conn.settimeout(5)
        assert conn.recv(10) == b""
    assert server.handoff.served == 0
    deadline = time.monotonic() + 10
    while server.handoff._pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.handoff._pending == 0
    server.close()


def test_a_handoff_socket_nobody_connects_to_goes_after_its_window(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, window=1.0)
    path = server.path
    bound = _alias(path)
    # still there (a connection now would be taken, and use it up)
    assert path.exists()
    time.sleep(1.5)
    assert _gone(path, bound)
    # and one still open when the server stops goes then
    later = server.path
    later_bound = _alias(later)
    server.close()
    assert _gone(later, later_bound)


def test_the_pending_cap_holds_across_handoff_sockets(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    """Each start's socket takes one connection; together they take no more than the cap."""
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, max_pending=2, timeout=30)
    silent = []
    try:
        # all open first, as when several starts' command lines are built at once
        for path in [server.path for _ in range(5)]:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(path))
            silent.append(conn)
        time.sleep(0.5)
        assert server.handoff._pending == 2
    finally:
        for conn in silent:
            conn.close()
        server.close()


def test_a_listener_handed_over_is_served_until_its_sender_lets_go(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    listener = _listener(port)
    held = relay.hand_over(listener, str(server.path), port)
    # the relay's own copy goes: from here only the server accepts on the port
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert _ask(client) == b"served:hi"
        assert server.handoff.served == 1
    finally:
        held.close()
    # the sandbox is gone: the port is closed, and no descriptor keeps its network alive
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            break
        except ConnectionResetError:
            # the probe met the listener as it closed: the port is going, look again
            pass
        time.sleep(0.02)
    else:
        raise AssertionError("the handed-over port is still served after its sender closed")
    server.close()


def _pipe_end() -> tuple[int, Callable[[], None]]:
    read, write = os.pipe()
    return read, lambda: (os.close(read), os.close(write))


def _socket_fd(sock: socket.socket) -> tuple[int, Callable[[], None]]:
    return sock.fileno(), sock.close


def _udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


def _not_listening(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    return sock


def _unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    return sock


@pytest.mark.parametrize(
    "case",
    [
        "a pipe",
        "a UDP socket on the port",
        "a TCP socket on the port that does not listen",
        "a listener on another port",
        "a listener on 127.0.0.2 with the port",
        "a Unix socket listening at a path of the host",
        "no descriptor",
        "two descriptors",
        "another port in the greeting",
        "no greeting",
        "an MPTCP listener on the port",
        "a listener on the port set to linger",
    ],
)
def test_whatever_else_is_handed_over_is_refused_and_never_served(
    case: str, tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    greeting = GREETING + b" %d\n" % port
    made: list[socket.socket] = []
    closers: list[Callable[[], None]] = []

    def keep(sock: socket.socket) -> int:
        made.append(sock)
        return sock.fileno()

    if case == "a pipe":
        fd, close = _pipe_end()
        closers.append(close)
        message, fds = greeting, [fd]
    elif case == "a UDP socket on the port":
        message, fds = greeting, [keep(_udp(port))]
    elif case == "a TCP socket on the port that does not listen":
        message, fds = greeting, [keep(_not_listening(port))]
    elif case == "a listener on another port":
        message, fds = greeting, [keep(_listener(_free_port(besides=port)))]
    elif case == "a listener on 127.0.0.2 with the port":
        message, fds = greeting, [keep(_listener(port, "127.0.0.2"))]
    elif case == "a Unix socket listening at a path of the host":
        message, fds = greeting, [keep(_unix_listener(tmp_path / "steal.sock"))]
    elif case == "no descriptor":
        message, fds = greeting, []
    elif case == "two descriptors":
        message, fds = greeting, [keep(_listener(port)), keep(_listener(_free_port(besides=port)))]
    elif case == "another port in the greeting":
        message, fds = GREETING + b" %d\n" % (port + 1), [keep(_listener(port))]
    elif case == "an MPTCP listener on the port":
        message, fds = greeting, [keep(_listener(port, proto=_IPPROTO_MPTCP))]
    elif case == "a listener on the port set to linger":
        lingers = _listener(port)
        lingers.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
        message, fds = greeting, [keep(lingers)]
    else:
        message, fds = b"GET / HTTP/1.1\r\n\r\n", [keep(_listener(port))]
    try:
        answer = _send(server.path, message, fds)
        assert answer.startswith(b"no "), answer
        assert server.handoff.served == 0
        assert server.servers == []
        for sock in made:
            if (
                sock.family == socket.AF_INET
                and sock.type == socket.SOCK_STREAM
                and (sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            ):
                # nothing accepts what the server was sent: the connection waits in the backlog
                with socket.create_connection(sock.getsockname(), timeout=10) as client:
                    client.settimeout(0.3)
                    client.sendall(b"hi")
                    with pytest.raises(TimeoutError):
                        client.recv(100)
    finally:
        for sock in made:
            sock.close()
        for close in closers:
            close()
        server.close()


def test_the_server_keeps_none_of_the_descriptors_it_refuses(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    before = len(list(Path("/proc/self/fd").iterdir()))
    for _ in range(50):
        with _listener(_free_port(besides=port)) as other, _udp(_free_port()) as udp:
            assert _send(server.path, GREETING + b" %d\n" % port, [other.fileno()]).startswith(
                b"no "
            )
            assert _send(
                server.path, GREETING + b" %d\n" % port, [other.fileno(), udp.fileno()]
            ).startswith(b"no ")
    # each refused descriptor was closed on the server's side: in threads of their own, so
    # after the answers; the pending count drops when a connection's closes are done
    deadline = time.monotonic() + 10
    while server.handoff._pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.handoff._pending == 0
    assert len(list(Path("/proc/self/fd").iterdir())) <= before + 2
    server.close()


def _lingering(linger: int) -> tuple[socket.socket, list[socket.socket]]:
    """A connected socket whose close() waits ``linger`` s: data its peer never reads."""
    server = socket.create_server(("127.0.0.1", 0))
    stuck = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    stuck.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            stuck.send(b"x" * 65536)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
    return stuck, [server, peer]


@pytest.mark.parametrize("control", [False, True], ids=["discarded", "control-kernel-closes"])
def test_a_lingering_socket_past_the_first_does_not_hold_the_server(
    control: bool, tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent as a second descriptor: with room for one, the kernel would close it here, and wait."""
    if control:
        monkeypatch.setattr(handoff, "_MAX_FDS", 1)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    stuck, keep = _lingering(2)
    try:
        with _listener(port) as listener, socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(str(server.path))
            # timed from before the send: whichever of the server and this close() lets go
            # last is the one that would wait, so both orders are counted
            started = time.monotonic()
            socket.send_fds(conn, [GREETING + b" %d\n" % port], [listener.fileno(), stuck.fileno()])
            stuck.close()
            assert conn.recv(200).startswith(b"no ")
            waited = time.monotonic() - started
    finally:
        for sock in keep:
            sock.close()
        server.close()
    assert (waited >= 1.5) if control else (waited < 1.0), waited


def _close_on_the_loop(
    loop: asyncio.AbstractEventLoop, items: Any, done: Callable[[], None] | None
) -> None:
    """The protection taken out: what the agent could reach is closed as it comes."""
    for item in items:
        if isinstance(item, socket.socket):
            item.close()
        else:
            os.close(item)
    if done is not None:
        done()


def _trailing(conn: socket.socket, port: int, stuck: socket.socket) -> None:
    # a harmless first message, refused; the lingering socket rides in the one behind it
    read, write = os.pipe()
    socket.send_fds(conn, [GREETING + b" %d\n" % port], [read])
    socket.send_fds(conn, [b"x"], [stuck.fileno()])
    os.close(read)
    os.close(write)


def _nested(conn: socket.socket, port: int, stuck: socket.socket) -> None:
    # one descriptor: a socketpair's end with the lingering socket queued inside it
    inner, outer = socket.socketpair()
    socket.send_fds(inner, [b"x"], [stuck.fileno()])
    inner.close()
    socket.send_fds(conn, [GREETING + b" %d\n" % port], [outer.fileno()])
    outer.close()


# each attack's control: the protection that stops it taken out
@pytest.mark.parametrize("control", [False, True], ids=["protected", "control"])
@pytest.mark.parametrize("attack", [_trailing, _nested], ids=["trailing", "nested"])
def test_a_lingering_socket_the_server_never_reads_does_not_hold_it(
    attack: Callable[[socket.socket, int, socket.socket], None],
    control: bool,
    tmp_path: Path,
    event_loop_thread: _Loop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its last close would wait in the server's thread: the relay's real handoff with it."""
    if control:
        monkeypatch.setattr(handoff, "_close_elsewhere", _close_on_the_loop)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    stuck, keep = _lingering(2)
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(str(server.path))
            # all of it queued, and the agent's own copies gone, before the server reads:
            # the server's is the last reference, as an agent that closes its own would have it
            with _loop_paused(event_loop_thread):
                attack(conn, port, stuck)
                stuck.close()
            started = time.monotonic()
            assert conn.recv(200).startswith(b"no ")
        # the relay's handoff right after: answered by a server that is not held
        with _listener(port) as listener:
            held = relay.hand_over(listener, str(server.path), port)
        waited = time.monotonic() - started
        held.close()
    finally:
        for sock in keep:
            sock.close()
        server.close()
    assert (waited >= 1.5) if control else (waited < 1.0), waited


@contextlib.contextmanager
def _loop_paused(loop: _Loop) -> Iterator[None]:
    """The server's event loop held still (no accept, no read) for the block's length."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(10)

    loop.loop.call_soon_threadsafe(hold)
    assert holding.wait(10)
    try:
        yield
    finally:
        release.set()


@pytest.mark.parametrize("control", [False, True], ids=["emptied", "control-past-the-budget"])
def test_what_a_refused_socket_holds_is_taken_out_before_it_is_closed(
    control: bool, tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nested lingering socket (its unread peer queued with it) is closed without a wait.

    So the closing thread ends at once and the connection's place is free again, rather
    than held for a linger the agent chose.
    """
    if control:
        monkeypatch.setattr(handoff, "_EMPTY_BUDGET", 0)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    stuck, keep = _lingering(3)
    try:
        inner, outer = socket.socketpair()
        # the unread peer queued first: the kernel's deferred closes run last-queued first,
        # so the lingering socket's close comes while its peer still holds the data unread
        socket.send_fds(inner, [b"y"], [keep[1].fileno()])
        socket.send_fds(inner, [b"x"], [stuck.fileno()])
        inner.close()
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(str(server.path))
            with _loop_paused(event_loop_thread):
                socket.send_fds(conn, [GREETING + b" %d\n" % port], [outer.fileno()])
                outer.close()
                stuck.close()
                keep[1].close()
            assert conn.recv(200).startswith(b"no ")
        deadline = time.monotonic() + 1.5
        while server.handoff._pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.handoff._pending == (1 if control else 0)
    finally:
        keep[0].close()
        server.close()


@pytest.mark.parametrize("control", [False, True], ids=["off-the-loop", "control-on-the-loop"])
def test_stopping_the_server_does_not_wait_on_its_backlog(
    control: bool, tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection never accepted (the cap was full) holds a nested lingering socket.

    Closing the listener releases it: on the loop, the broker's shutdown would wait.
    """
    if control:
        monkeypatch.setattr(handoff, "_close_elsewhere", _close_on_the_loop)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, max_pending=1)
    stuck, keep = _lingering(3)
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(server.path))
    deadline = time.monotonic() + 10
    while server.handoff._pending < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    waiting = socket.socket(socket.AF_UNIX)
    try:
        waiting.connect(str(server.path))
        inner, outer = socket.socketpair()
        # the peer first: the lingering socket's close comes while its peer still holds the data
        socket.send_fds(inner, [b"y"], [keep[1].fileno()])
        socket.send_fds(inner, [b"x"], [stuck.fileno()])
        socket.send_fds(waiting, [GREETING + b" %d\n" % port], [outer.fileno()])
        for sock in (inner, outer, stuck, keep[1], waiting):
            sock.close()
        started = time.monotonic()
        server.close()
        stopped = time.monotonic() - started
    finally:
        silent.close()
        keep[0].close()
    assert (stopped >= 2.0) if control else (stopped < 1.0), stopped


def _closers(besides: frozenset[int] = frozenset()) -> int:
    """The handoff's closing threads alive, but for those in ``besides`` (idents)."""
    return sum(
        t.name == "outloop-handoff-close" and t.ident not in besides for t in threading.enumerate()
    )


def test_closes_that_hang_are_bounded_by_the_pending_cap(
    tmp_path: Path, event_loop_thread: _Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connection's leftovers hang in one thread, and it keeps its place until they close.

    Else an agent could leave a thread and its descriptors behind per connection, without end.
    """
    # past the budget for emptying what it holds (none here), a nested socket's close waits
    monkeypatch.setattr(handoff, "_EMPTY_BUDGET", 0)
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, max_pending=2)
    peers: list[socket.socket] = []
    conns: list[socket.socket] = []
    # threads of earlier tests may still be ending: only this test's are counted
    earlier = frozenset(t.ident for t in threading.enumerate() if t.ident is not None)
    try:
        for _ in range(3):
            stuck, keep = _lingering(60)
            peers.extend(keep)
            conn = socket.socket(socket.AF_UNIX)
            conn.settimeout(10)
            conn.connect(str(server.path))
            conns.append(conn)
            with _loop_paused(event_loop_thread):
                _nested(conn, port, stuck)
                stuck.close()
        for conn in conns[:2]:
            assert conn.recv(200).startswith(b"no ")
        deadline = time.monotonic() + 10
        while _closers(earlier) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # two hang (one each), and the third connection is not even accepted
        time.sleep(0.5)
        assert _closers(earlier) == 2
        assert server.handoff._pending == 2
        conns[2].settimeout(0.5)
        with pytest.raises(TimeoutError):
            conns[2].recv(200)
        # the unread peers go (a reset ends each linger): places free, the third is answered
        for peer in peers:
            peer.close()
        conns[2].settimeout(10)
        assert conns[2].recv(200).startswith(b"no ")
    finally:
        for sock in (*peers, *conns):
            sock.close()
        server.close()


def test_listeners_served_at_once_are_capped(tmp_path: Path, event_loop_thread: _Loop) -> None:
    """Each costs the runner descriptors: so many, and no more, until one is let go."""
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, max_served=2)
    held = []
    for _ in range(2):
        with _listener(port, reuse_port=True) as listener:
            held.append(relay.hand_over(listener, str(server.path), port))
    with (
        _listener(port, reuse_port=True) as listener,
        pytest.raises(OSError, match="served already"),
    ):
        relay.hand_over(listener, str(server.path), port)
    held.pop().close()
    deadline = time.monotonic() + 10
    while server.handoff._serving > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with _listener(port, reuse_port=True) as listener:
        held.append(relay.hand_over(listener, str(server.path), port))
    assert server.handoff.served == 3
    for conn in held:
        conn.close()
    server.close()


def test_a_connection_that_has_handed_over_takes_no_more_descriptors(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    """Its reader waits for its end on the loop: a descriptor sent after is refused."""
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    with _listener(port) as listener:
        held = relay.hand_over(listener, str(server.path), port)
    read, write = os.pipe()
    try:
        with pytest.raises(PermissionError):
            socket.send_fds(held, [b"x"], [read])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert _ask(client) == b"served:hi"
    finally:
        os.close(read)
        os.close(write)
        held.close()
        server.close()


def test_handoffs_in_progress_are_capped_and_time_out(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port, max_pending=3, timeout=1.0)
    silent = []
    for _ in range(3):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(server.path))
        silent.append(conn)
    time.sleep(0.2)
    # one more than the cap is not accepted: it waits in the backlog (none of the server's
    # descriptors, nothing it sent closed on the server's side) until a place is free,
    # when the silent ones' time is up; then its handoff is taken
    listener = _listener(port)
    started = time.monotonic()
    held = relay.hand_over(listener, str(server.path), port)
    assert time.monotonic() - started >= 0.5
    listener.close()
    for conn in silent:
        conn.settimeout(5)
        assert conn.recv(10) == b""
        conn.close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        assert _ask(client) == b"served:hi"
    held.close()
    server.close()


def _relay_program(port: int, relayed: Path, handoff: Path, probe: str) -> list[str]:
    ports = [str(port), str(relayed), str(handoff)]
    return [sys.executable, "-I", "-S", str(RELAY), *ports, "--", sys.executable, "-c", probe]


# the agent's side: one request to the port, and how many threads its parent (the relay) has
_PROBE = """
import os, socket
with socket.create_connection(("127.0.0.1", {port}), timeout=10) as c:
    c.sendall(b"hi")
    answer = b""
    while more := c.recv(100):
        answer += more
print(answer.decode(), len(os.listdir(f"/proc/{{os.getppid()}}/task")))
"""


def test_the_relay_hands_its_port_over_and_carries_no_bytes(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    server = _Server(event_loop_thread, tmp_path / "h.sock", port)
    done = subprocess.run(
        _relay_program(port, tmp_path / "unused.sock", server.path, _PROBE.format(port=port)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    # served by the server outside; the relay runs one thread, the agent's parent only
    assert done.stdout.split() == ["served:hi", "1"], done.stdout
    assert done.stderr == ""
    assert server.handoff.served == 1
    server.close()


def test_a_relay_whose_server_does_not_take_the_port_relays_it(
    tmp_path: Path, event_loop_thread: _Loop
) -> None:
    port = _free_port()
    # a handoff server for another port: it answers no
    refusing = _Server(event_loop_thread, tmp_path / "h.sock", port + 1)
    relayed_path = tmp_path / "relayed.sock"
    relayed = _unix_listener(relayed_path)

    def answer_once() -> None:
        conn, _ = relayed.accept()
        with conn:
            conn.settimeout(10)
            data = conn.recv(100)
            conn.sendall(b"relayed:" + data)

    answering = threading.Thread(target=answer_once, daemon=True)
    answering.start()
    done = subprocess.run(
        _relay_program(port, relayed_path, refusing.path, _PROBE.format(port=port)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    answering.join(10)
    relayed.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "relayed:hi", done.stdout
    assert f"127.0.0.1:{port} relayed here" in done.stderr
    assert refusing.handoff.served == 0
    refusing.close()
