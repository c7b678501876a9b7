"""Supervising a child's whole tree: watching it, killing it, and sweeping its orphans.

A child runs in a session of its own, and what it starts may leave that
session too (``setsid``), double-fork away from its parent, or outlive it.
So a tree is known by three things at once: its process group, the
descendants seen leaving the group (snapshotted while their parents still
show where they came from), and the pipes it holds. Killing is SIGTERM to all
of them, SIGKILL after a grace, and waiting until they are gone, so that
"returned" means "gone". Orphans a daemon leaves behind come to us when we
are a child subreaper (``adopt_orphans``) and are killed once no agent or
goal runs any more.

Without a Linux ``/proc`` only the process group can be seen, and is killed
blind.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from enum import Enum

from outloop_cli.process.proc import (
    ProcInfo,
    descendants,
    have_proc,
    leaving_for_good,
    own_children,
    pipe_holders,
    process_table,
    read_stat,
    start_ticks,
)
from outloop_cli.process.sinks import Pump

__all__ = ["Child", "Orphans", "Stop", "adopt_orphans"]

# How often the waiting thread looks at the clock, the cancel event and the
# idle timer. Exit itself is noticed at once where pidfds exist.
_POLL = 0.05
# SIGKILL cannot be refused, but delivery is asynchronous: wait this long for
# the tree to vanish so that "returned" means "gone".
_SETTLE = 2.0
# How often a running child's tree is scanned for descendants that left its
# process group (setsid), so they can be killed with it later. Scanning
# /proc costs a few milliseconds; children quicker than this cost nothing.
_SNAPSHOT_EVERY = 0.5


class Orphans(Enum):
    """What becomes of the orphans a child's tree may leave once its leader has exited."""

    # an agent's or a goal's tree outside a sandbox: kill what is left and reap it
    SWEEP = "sweep"
    # a sandbox whose PID namespace ends with it: nothing can be left running, only
    # its init's exit to collect
    REAP = "reap"
    # a trusted tool (git): a daemon it starts on purpose (auto gc) may finish its work
    LEAVE = "leave"


class Stop(Enum):
    """Why we killed a process; the value is the log marker's wording."""

    TIMEOUT = "timeout"
    IDLE = "idle_timeout"
    CANCEL = "cancelled"
    PUMP_FAILED = "output handling failed"


class Child:
    """A started child and the discipline for watching and killing its tree.

    The leader is never reaped until its tree has been dealt with: as a
    zombie it keeps its pid, which is also the group id, out of reuse, so
    ``killpg`` cannot hit a stranger.
    """

    def __init__(self, proc: subprocess.Popen[bytes], stdin: tuple[int, bytes] | None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._stdin = stdin
        self._pidfd = _open_pidfd(proc.pid)
        # descendants outside the group, as (pid, start time) against pid reuse
        self._escaped: set[tuple[int, int]] = set()
        self._released = False

    @classmethod
    def start(
        cls,
        popen: Callable[[int], subprocess.Popen[bytes]],
        *,
        stdin_data: bytes | None,
        orphans: Orphans,
    ) -> Child:
        """Start the child with ``popen``, given the child's stdin.

        ``popen`` runs inside the orphanage's gate: a sweep must not see the
        new child between fork and registration. Other starts may run beside
        it (``--jobs`` runs start children from many threads at once); only a
        sweep waits for them. ``orphans`` says what becomes of the orphans the
        tree may leave (see ``adopt_orphans``).
        """
        if stdin_data is None:
            stdin_r = os.open(os.devnull, os.O_RDONLY)
            stdin_w = None
        else:
            stdin_r, stdin_w = os.pipe()
        try:
            with _orphanage.gate.starting():
                proc = popen(stdin_r)
                _orphanage.register(proc.pid, orphans)
        except BaseException:
            if stdin_w is not None:
                os.close(stdin_w)
            raise
        finally:
            os.close(stdin_r)
        stdin = None if stdin_w is None else (stdin_w, stdin_data or b"")
        return cls(proc, stdin)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def supervise(
        self,
        outputs: Mapping[int, Callable[[bytes], object]],
        *,
        timeout: float | None,
        idle_timeout: float | None,
        last_output: Callable[[], float] | None,
        cancel: threading.Event | None,
        kill_grace: float,
        note: Callable[[str], None] | None,
    ) -> Stop | None:
        """Pump the pipes, watch, kill if needed, reap; return why we killed, if we did."""
        say = note or _ignore
        pipes = {os.fstat(fd).st_ino for fd in outputs}
        # with a pidfd this thread waits for the exit and the pipes in one select
        pump = Pump(outputs, self._stdin, inline=self._pidfd is not None)
        try:
            pump.start()
            stopped = self._watch(pump, timeout, idle_timeout, last_output, cancel)
            if stopped is None:
                self._kill_leftovers(say)
            else:
                say(_kill_message(stopped, timeout, idle_timeout, pump.error))
                self._kill_tree(kill_grace, say)
        except BaseException as exc:
            # Ctrl-C (or a bug above): the tree must not outlive this call
            why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else repr(exc)
            try:
                say(f"killed: {why}")
                self._kill_tree(kill_grace, say)
            except KeyboardInterrupt:
                # a second Ctrl-C means "now": skip the grace
                self._kill_tree(0.0, say)
            raise
        finally:
            self._release(say)
            if not pump.drained():
                self._kill_pipe_holders(pipes, say)
            pump.finish()
            self._close()
        if pump.error is not None:
            raise pump.error
        return stopped

    def _watch(
        self,
        pump: Pump,
        timeout: float | None,
        idle_timeout: float | None,
        last_output: Callable[[], float] | None,
        cancel: threading.Event | None,
    ) -> Stop | None:
        start = time.monotonic()
        next_snapshot = start + _SNAPSHOT_EVERY
        pidfd = self._pidfd
        wait = self._wait_exit if pidfd is None else (lambda t: pump.serve(t, pidfd))
        while not wait(_POLL):
            now = time.monotonic()
            if now >= next_snapshot:
                # learn who escaped the group while their parents still
                # show where they came from
                self._snapshot_escaped()
                # on a machine with thousands of processes, scan less often:
                # the watching must not cost more than ~2% of a core
                scan = time.monotonic() - now
                next_snapshot = now + max(_SNAPSHOT_EVERY, 50 * scan)
            if pump.error is not None:
                return Stop.PUMP_FAILED
            if cancel is not None and cancel.is_set():
                return Stop.CANCEL
            if timeout is not None and now - start >= timeout:
                return Stop.TIMEOUT
            if (
                idle_timeout is not None
                and last_output is not None
                and now - last_output() >= idle_timeout
            ):
                return Stop.IDLE
        return None

    def _wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the leader to exit, without reaping it."""
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            return bool(poller.poll(timeout * 1000))
        if self._exited():
            return True
        time.sleep(timeout)
        return self._exited()

    def _exited(self) -> bool:
        if not hasattr(os, "waitid"):
            return self.proc.poll() is not None
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is not None
        except ChildProcessError:
            # already reaped: by Popen, or by someone else's waitpid(-1)
            return True

    def _kill_leftovers(self, say: Callable[[str], None]) -> None:
        """The leader exited on its own: kill what it left running, in its group or not."""
        if not self._escaped:
            # the common case (git, a well-behaved agent): an empty group and nothing
            # known to have left it, so a scan of /proc would find nothing to start from
            self.proc.wait()
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
        table = process_table()
        if table is not None:
            self._snapshot_escaped(table)
            left = self._alive_members(table)
            if not left:
                self.proc.wait()
                return
            say(f"killed {len(left)} process(es) the command left running after it exited")
        # without /proc we cannot see the group, so kill it blind; harmless if empty
        self._signal(signal.SIGKILL)
        self._settle()

    def _kill_tree(self, grace: float, say: Callable[[str], None]) -> None:
        """SIGTERM the tree, SIGKILL what is left after ``grace``, reap the leader."""
        # snapshot before signalling: once parents die, ppid chains are lost
        self._snapshot_escaped()
        self._signal(signal.SIGTERM)
        # a stopped process (Ctrl-Z, a debugger) only handles SIGTERM once continued
        self._signal(signal.SIGCONT)
        deadline = time.monotonic() + grace
        while self._alive() and time.monotonic() < deadline:
            time.sleep(_POLL / 2)
        self._snapshot_escaped()
        if self._alive():
            say(f"still running {_seconds(grace)} after SIGTERM: sent SIGKILL")
        # always: without /proc we cannot tell whether group members survived
        self._signal(signal.SIGKILL)
        self._settle()

    def _snapshot_escaped(self, table: Mapping[int, ProcInfo] | None = None) -> None:
        """Remember every descendant of the group that moved to a group of its own."""
        if table is None:
            table = process_table()
            if table is None:
                return
        # from every member, not just the leader: a member whose parent died
        # was reparented away, but its own children still point at it
        roots = [pid for pid, info in table.items() if info.pgrp == self.pid]
        roots += [
            pid
            for pid, start in self._escaped
            if (info := table.get(pid)) is not None and info.start_ticks == start
        ]
        for pid in descendants(table, roots):
            info = table[pid]
            if info.pgrp != self.pid:
                self._escaped.add((pid, info.start_ticks))

    def _kill_pipe_holders(self, pipes: set[int], say: Callable[[str], None]) -> None:
        """Kill whatever still holds our output pipes after the tree was dealt with.

        A double-forked daemon is reparented away before any snapshot can
        place it in the tree, but if it kept our stdout it inherited that
        from the tree, so holding the pipe is proof enough that it is ours.
        """
        holders = pipe_holders(pipes)
        if not holders:
            return
        say(f"killed {len(holders)} process(es) that escaped the tree and kept its output open")
        targets = [(pid, start_ticks(pid)) for pid in holders]
        for pid, _ in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        # as for the tree: "returned" means "gone"
        deadline = time.monotonic() + _SETTLE
        while time.monotonic() < deadline and any(
            (info := read_stat(pid)) is not None and info.start_ticks == start and info.alive
            for pid, start in targets
        ):
            time.sleep(0.01)

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            # gone already, or a member we may not signal (setuid); nothing to do
            pass
        for pid, started in self._escaped:
            if start_ticks(pid) != started:
                continue  # exited; the pid may belong to someone else now
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _alive(self) -> bool:
        """Whether anything we are killing still runs (zombies don't count)."""
        table = process_table()
        if table is None:
            return not self._exited()
        return bool(self._alive_members(table))

    def _alive_members(self, table: Mapping[int, ProcInfo]) -> list[int]:
        members = [
            pid for pid, info in table.items() if info.pgrp == self.pid and _may_run(pid, info)
        ]
        members += [
            pid
            for pid, start in self._escaped
            if (info := table.get(pid)) is not None
            and info.start_ticks == start
            and _may_run(pid, info)
        ]
        return members

    def _settle(self) -> None:
        deadline = time.monotonic() + _SETTLE
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        # the leader got SIGKILL or already exited, so this cannot hang on it
        self.proc.wait()

    def _release(self, say: Callable[[str], None]) -> None:
        """The tree is dealt with: forget the leader, and sweep orphans if it was the last."""
        if self._released or self.proc.returncode is None:
            # not reaped (a kill failed half-way): still ours, never an orphan
            return
        self._released = True
        swept = _orphanage.release(self.pid)
        if swept:
            say(f"killed {swept} orphaned process(es) that escaped the tree")

    def _close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _kill_message(
    stopped: Stop, timeout: float | None, idle_timeout: float | None, error: BaseException | None
) -> str:
    if stopped is Stop.TIMEOUT and timeout is not None:
        return f"killed: still running after {_seconds(timeout)} (timeout)"
    if stopped is Stop.IDLE and idle_timeout is not None:
        return f"killed: no output for {_seconds(idle_timeout)} (idle_timeout)"
    if stopped is Stop.PUMP_FAILED:
        return f"killed: {stopped.value}: {error!r}"
    return f"killed: {stopped.value}"


def _may_run(pid: int, info: ProcInfo) -> bool:
    """Whether ``pid`` can still run code: alive, and not past the point of no return.

    A sandbox's init is the case in point: bubblewrap exits as soon as the init
    reports the command's status, while the kernel is still tearing down the
    init's mounts and namespaces, for milliseconds or (thousands of mounts)
    much longer. Counting it would report a well-behaved sandbox as having
    left a process running.
    """
    return info.alive and not (info.exiting and leaving_for_good(pid))


def _open_pidfd(pid: int) -> int | None:
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        # kernels before 5.3, or a seccomp profile that forbids it: poll instead
        return None
    return fd


_PR_SET_CHILD_SUBREAPER = 36
# how long an adopted orphan may take to exit by itself before it counts as a daemon
_EXITING_GRACE = 0.2


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux only).

    A daemon that double-forks is reparented before any snapshot can place
    it in a tree, and once it has closed our pipes nothing ties it to the
    agent that started it. As a child subreaper (``prctl(2)``) we get such
    orphans instead of init, and kill the ones born while an agent or goal
    ran once no agent or goal is running any more; orphans of trusted
    commands (``run_captured``) are only reaped when they exit.

    Call it once, early, only in a process where ``process/spawn.py`` starts
    every child (the ``outloop`` CLI): other children would be taken for
    orphans. Returns whether adoption is on.
    """
    if _orphanage.adopting:
        return True
    if not have_proc():
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    _orphanage.adopting = True
    return True


class _Orphanage:
    """Our live children, and the sweeping of orphans that were adopted by us."""

    def __init__(self) -> None:
        self.gate = _SpawnGate()
        # the sets below change from many threads: starts register beside each other
        self._book = threading.Lock()
        self.adopting = False
        # children started here and not yet released; everything else whose
        # parent is us was adopted
        self._children: set[int] = set()
        # trees running now whose orphans are swept: leader pid -> its start (clock ticks)
        self._swept: dict[int, int] = {}
        # sandboxes running now (Orphans.REAP)
        self._reaped: set[int] = set()
        # earliest start of the swept trees that ended since the last sweep
        self._pending_since: int | None = None

    def register(self, pid: int, orphans: Orphans) -> None:
        """Called inside ``gate.starting()``, right after the fork."""
        start = start_ticks(pid) if orphans is Orphans.SWEEP and self.adopting else None
        with self._book:
            self._children.add(pid)
            if start is not None:
                self._swept[pid] = start
            if orphans is Orphans.REAP:
                self._reaped.add(pid)

    def release(self, pid: int) -> int:
        """A tree ended (its leader reaped); returns how many orphans were killed."""
        with self._book:
            self._children.discard(pid)
            start = self._swept.pop(pid, None)
            sandbox = pid in self._reaped
            self._reaped.discard(pid)
        if not self.adopting:
            return 0
        if start is None:
            if sandbox:
                # its init, killed with bubblewrap, comes to us to be collected; anything
                # else in its PID namespace died with it, so no table of the machine is read
                with self.gate.sweeping(), self._book:
                    self._reap()
            # a trusted child (git, outloop's own helpers) has nothing swept after it, so
            # no start elsewhere waits for it; should it have left an orphan, the next
            # agent or goal to end reaps it
            return 0
        with self.gate.sweeping(), self._book:
            since = self._pending_since
            self._pending_since = start if since is None else min(since, start)
            killed = 0
            # while another agent or goal runs, a new orphan may be its own
            if not self._swept and self._pending_since is not None:
                killed = self._kill_orphans(self._pending_since)
                self._pending_since = None
            self._reap()
            return killed

    def _kill_orphans(self, since: int) -> int:
        # an orphan may still be on its way out (a sandbox's init of a run beside this
        # one, the kernel still unmounting its view): once past the point of no return
        # with nothing below it, it is not counted (``leaving_for_good``), and an orphan
        # still there after a short grace is a daemon to kill. The wait polls our own
        # children list (a few reads); the verdict is the full table's.
        deadline = time.monotonic() + _EXITING_GRACE
        while self._orphans_among(own_children(), since) and time.monotonic() < deadline:
            time.sleep(0.002)
            self._reap()
        orphans, table = self._orphans(since)
        while orphans and time.monotonic() < deadline:
            time.sleep(0.002)
            self._reap()
            orphans, table = self._orphans(since)
        if not orphans:
            return 0
        targets = [
            (pid, table[pid].start_ticks) for pid in [*orphans, *descendants(table, orphans)]
        ]
        for pid, _ in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + _SETTLE
        while time.monotonic() < deadline:
            # their children come to us as they die, and must be reaped too
            self._reap()
            if not any(
                (info := read_stat(pid)) is not None and info.start_ticks == start and info.alive
                for pid, start in targets
            ):
                break
            time.sleep(0.01)
        return len(targets)

    def _orphans(self, since: int) -> tuple[list[int], Mapping[int, ProcInfo]]:
        """Adopted processes started since ``since`` that still run, and the table read."""
        table = process_table() or {}
        return self._orphans_among(table, since), table

    def _orphans_among(self, table: Mapping[int, ProcInfo] | None, since: int) -> list[int]:
        me = os.getpid()
        return [
            pid
            for pid, info in (table or {}).items()
            if info.ppid == me
            and pid not in self._children
            and info.start_ticks >= since
            # on its way out with nothing below it: no daemon, and no reason to wait
            # for it; it is reaped as a zombie after a later child
            and _may_run(pid, info)
        ]

    def _reap(self) -> None:
        """Collect the exit status of adopted orphans that died, so no zombie stays."""
        # runs after every child (git included): our children, not the whole machine
        table = own_children()
        if table is None:
            table = process_table()
        if table is None:
            return
        me = os.getpid()
        for pid, info in table.items():
            if info.ppid == me and pid not in self._children and not info.alive:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


class _SpawnGate:
    """Many starts at once, or one sweep alone: a shared/exclusive lock, sweeps first.

    A start holds it shared from fork to registration, a sweep (reaping and
    killing adopted orphans) exclusively, so a sweep never mistakes a child
    that is not registered yet for an orphan. Starts never wait for each
    other; ``waits`` counts the starts that waited for a sweep.
    """

    def __init__(self) -> None:
        self._state = threading.Condition(threading.Lock())
        self._starting = 0
        self._sweeping = False
        self._sweeps_waiting = 0
        self.waits = 0

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        with self._state:
            if self._sweeping or self._sweeps_waiting:
                self.waits += 1
            while self._sweeping or self._sweeps_waiting:
                self._state.wait()
            self._starting += 1
        try:
            yield
        finally:
            with self._state:
                self._starting -= 1
                if not self._starting:
                    self._state.notify_all()

    @contextlib.contextmanager
    def sweeping(self) -> Iterator[None]:
        with self._state:
            self._sweeps_waiting += 1
            while self._sweeping or self._starting:
                self._state.wait()
            self._sweeps_waiting -= 1
            self._sweeping = True
        try:
            yield
        finally:
            with self._state:
                self._sweeping = False
                self._state.notify_all()


_orphanage = _Orphanage()


def _ignore(_: str) -> None:
    pass


def _seconds(value: float) -> str:
    return f"{value:g}s"
