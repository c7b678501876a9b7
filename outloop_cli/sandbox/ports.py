"""A way out of the sandbox's own network: a port inside, the server outside that answers it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import platform
import socket
import stat
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outloop_cli.errors import CouldNotRun

# the port HTTPS_PROXY names inside the sandbox's own network (nothing else listens there)
SANDBOX_EGRESS_PORT = 3128
# connections one server of a run (the access proxy, the egress proxy) holds at once:
# each is a file descriptor of the runner's, which the audit log, the run's records and
# its git need too; an agent that opens and holds more gets BUSY_RESPONSE and a closed
# connection instead of the runner's last descriptors
MAX_CONNECTIONS = 256
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
# SO_PASSRIGHTS (Linux 6.16, include/uapi/asm-generic/socket.h): off, a Unix socket takes
# no file descriptors; the sender's SCM_RIGHTS fails with EPERM. Python does not name it
# yet; its number is asm-generic's, which these machines use
_SO_PASSRIGHTS: int | None = getattr(socket, "SO_PASSRIGHTS", None)
if _SO_PASSRIGHTS is None and platform.machine() in {
    "x86_64",
    "aarch64",
    "arm64",
    "riscv64",
    "i686",
    "i386",
    "armv7l",
}:
    _SO_PASSRIGHTS = 83


@dataclass(frozen=True)
class SandboxPort:
    """``127.0.0.1:port`` inside one sandbox, answered by a server of outloop's outside.

    The sandbox's first process hands the listening socket it binds to the
    server through ``handoff`` (``handoff.py``), a socket opened for this one
    sandbox's start and gone once that process has connected; should the
    server not take it, that process relays each connection to ``socket``
    instead.
    """

    port: int
    socket: Path
    handoff: Path


@dataclass(frozen=True)
class SandboxServer:
    """A server of outloop's (the access proxy, the egress proxy) that sandboxes reach.

    ``open_handoff`` makes a handoff socket for one sandbox's start and says
    where: its first connection is taken, and then it is gone, before the
    agent runs (``handoff.py``). So each start gets its own.
    """

    port: int
    socket: Path
    open_handoff: Callable[[], Path]

    def for_one_start(self) -> SandboxPort:
        return SandboxPort(self.port, self.socket, self.open_handoff())


# the handoff sockets (handoff.py) of every run of this user: one directory, hidden in
# every sandbox's view (bwrap.hide), random names; short, as a socket's path must be (108
# bytes with its parent)
HANDOFF_DIR_PREFIX = "outloop-h-"
HANDOFF_NAME_BYTES = 6


def runtime_parent() -> str:
    """Where a run's sockets go: a per-user tmpfs where there is one, else the temp dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir() and len(runtime) < 60:
        return runtime
    return tempfile.gettempdir()


def handoff_home(parent: str | None = None) -> Path:
    """The directory of this user's handoff sockets, under ``parent`` (default: the runtime's).

    One place for all of them, so that every sandbox's view can hide it, whichever
    run's sockets it holds.
    """
    return Path(parent or runtime_parent()) / f"{HANDOFF_DIR_PREFIX}{os.getuid()}"


def _fallback_home() -> Path:
    # the user's own state directory (never in a sandbox's view): where a shared temp
    # dir's name was taken by someone else, who could otherwise stop every run of ours
    from outloop_cli import paths

    return paths.state_home() / "h"


def ensure_handoff_home(parent: str | None = None) -> Path:
    """:func:`handoff_home`, made if missing, if it is this user's alone; else the fallback.

    Under a shared temp dir another user can take the name first (a directory, a
    link): then the user's own state directory serves instead.
    """
    home = handoff_home(parent)
    try:
        return _own_directory(home)
    except CouldNotRun:
        if parent is not None:
            raise
    return _own_directory(_fallback_home())


def homes_to_hide() -> list[Path]:
    """Every directory this user's handoff sockets can be in, made if missing (see wrap)."""
    homes = [ensure_handoff_home()]
    fallback = _fallback_home()
    if fallback not in homes and fallback.is_dir():
        homes.append(fallback)
    return homes


def _own_directory(home: Path) -> Path:
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o700, parents=home.parent != Path(runtime_parent()))
        # whatever the umask left: the owner's alone, and usable
        home.chmod(0o700)
    try:
        info = home.lstat()
    except OSError as exc:
        raise CouldNotRun(f"cannot make {home} for the sandboxes' handoff sockets: {exc}") from None
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) != 0o700
    ):
        raise CouldNotRun(
            f"{home} is not a directory of this user's alone (mode "
            f"{stat.S_IMODE(info.st_mode):o}, owner {info.st_uid}, "
            f"{'a directory' if stat.S_ISDIR(info.st_mode) else 'not a directory'})",
            hint="remove it: outloop makes it again, for you alone (0700)",
        )
    return home


# how long a sandbox's start waits for its server's loop to open a handoff socket
_OPEN_TIMEOUT = 10.0


def open_handoff_on(
    loop: asyncio.AbstractEventLoop, opening: Coroutine[Any, Any, None], path: Path
) -> Path:
    """``path``, once ``opening`` (a server's ``open_handoff``) has run on ``loop``.

    Called from the engine's thread as a sandbox's command line is built. A
    loop that does not do it in time, or cannot, stops the start with a
    message, never a traceback.
    """
    try:
        future = asyncio.run_coroutine_threadsafe(opening, loop)
    except RuntimeError as exc:  # the loop is closed
        opening.close()
        raise _not_opened(path, exc) from None
    try:
        future.result(_OPEN_TIMEOUT)
    except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError) as exc:
        future.cancel()
        path.unlink(missing_ok=True)
        raise _not_opened(path, exc) from None
    except (OSError, RuntimeError) as exc:
        path.unlink(missing_ok=True)
        raise _not_opened(path, exc) from None
    return path


def _not_opened(path: Path, exc: BaseException) -> CouldNotRun:
    why = str(exc) or type(exc).__name__
    return CouldNotRun(
        f"could not open a handoff socket for the sandbox at {path} ({why})",
        hint="the run's proxy may have stopped or be overloaded; resume the run",
    )


def refuse_descriptors(sock: socket.socket) -> bool:
    """Whether ``sock`` now refuses descriptors sent to it (False: this kernel cannot).

    A Unix socket the agent can reach must: whatever descriptors a message
    carries and its reader does not take, the kernel closes in the reader's
    thread, and the last close of a socket the agent set to linger waits as
    long as it chose; that thread is the broker's event loop. Set on a
    listener, it holds for every connection accepted from it.
    """
    if _SO_PASSRIGHTS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_PASSRIGHTS, 0)
    except OSError:
        # ENOPROTOOPT: a kernel before 6.16 (docs/security.md, "Not closed yet")
        return False
    return True


def unix_listener(
    path: Path, *, backlog: int = 128, takes_descriptors: bool = False
) -> socket.socket:
    """A non-blocking Unix listener at ``path``, for the owner alone, refusing descriptors.

    ``takes_descriptors``: the handoff socket only, which takes a listener and
    closes everything else it is sent off its own thread (``handoff.py``).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # before listen(): until then a connection is refused whatever the mode (the
        # process-wide umask, which other threads' files would get too, is left alone)
        path.chmod(0o600)
        if not takes_descriptors:
            refuse_descriptors(sock)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
