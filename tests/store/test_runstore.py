"""Run liveness: the run lock and the loop lock, held and probed by real processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.store.locks import effective_state, is_running, loop_lock, run_lock, running_owner
from outloop_cli.store.records import RunRecord, RunState
from outloop_cli.store.runs import RunPaths, RunStore
from tests.support.e2e import pid_alive

HOLDER = """
import subprocess, sys, time
from pathlib import Path
from outloop_cli.store.runs import RunPaths
from outloop_cli.store.locks import loop_lock, run_lock
kind, target = sys.argv[1], Path(sys.argv[2])
lock = run_lock(RunPaths(target)) if kind == "run" else loop_lock(target, sys.argv[3], run_id="r-1")
spawn = sys.argv[-1] == "spawn"
with lock:
    if spawn:
        # a child that outlives us: it must not keep the lock alive
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        print(child.pid, flush=True)
    print("held", flush=True)
    time.sleep(60)
"""


def _hold(kind: str, target: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, str(target), *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline().strip()
        assert line, "the holder exited before taking the lock"
        lines.append(line)
        if line == "held":
            return proc, lines


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def _record(run_id: str, *, pid: int | None, started: datetime | None = None) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        loop="fix",
        state=RunState.RUNNING,
        started_at=(started or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        branch=f"outloop/fix/{run_id}",
        base_commit="0" * 40,
        worktree="/nonexistent",
        repo_root="/nonexistent",
        config_path=".outloop/fix.yml",
        agent_label="command",
        goal_label="true",
        pid=pid,
        host=socket.gethostname(),
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "git")


def _saved(store: RunStore, record: RunRecord) -> RunPaths:
    store.create(record.run_id)
    store.save(record)
    return store.paths(record.run_id)


def test_a_held_run_lock_means_running_and_dies_with_its_holder(store: RunStore) -> None:
    record = _record("r-1", pid=None)
    paths = _saved(store, record)
    holder, _ = _hold("run", paths.root)
    try:
        assert is_running(paths)
        assert effective_state(record, paths) is RunState.RUNNING
        owner = running_owner(paths)
        assert owner is not None and owner.pid == holder.pid
        with pytest.raises(CouldNotRun) as caught, run_lock(paths):
            pass
        assert caught.value.message == f"run r-1 is already running (pid {holder.pid})"
        assert "outloop stop r-1" in (caught.value.hint or "")
    finally:
        _kill(holder)
    # SIGKILL: no cleanup ran, yet the kernel dropped the lock
    assert not is_running(paths)
    assert running_owner(paths) is None
    assert effective_state(record, paths) is RunState.CRASHED
    with run_lock(paths) as owner:
        assert owner.pid == os.getpid()
        assert is_running(paths)
    assert not is_running(paths)


def test_a_child_that_outlives_the_runner_does_not_keep_the_run_alive(store: RunStore) -> None:
    paths = _saved(store, _record("r-2", pid=None))
    holder, lines = _hold("run", paths.root, "spawn")
    child = int(lines[0])
    try:
        _kill(holder)
        assert pid_alive(child)
        assert not is_running(paths)
    finally:
        os.kill(child, signal.SIGKILL)


def test_two_holders_in_one_process_conflict(store: RunStore) -> None:
    """`outloop run a b --jobs 2` runs loops in threads: the lock must work between them."""
    paths = _saved(store, _record("r-3", pid=None))
    with run_lock(paths), pytest.raises(CouldNotRun), run_lock(paths):
        pass


def test_a_reader_probing_the_lock_does_not_make_a_start_fail(store: RunStore) -> None:
    paths = _saved(store, _record("r-4", pid=None))
    paths.lock.touch()
    fd = os.open(paths.lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.1, os.close, args=(fd,)).start()
    with run_lock(paths):
        assert is_running(paths)


def test_finished_records_are_what_they_say(store: RunStore) -> None:
    record = _record("r-5", pid=os.getpid())
    record.state = RunState.FINISHED
    paths = _saved(store, record)
    assert effective_state(record, paths) is RunState.FINISHED


def test_a_reused_pid_does_not_keep_a_dead_run_running(store: RunStore) -> None:
    # the runner died; its pid now belongs to a live process (this one)
    record = _record("r-6", pid=os.getpid())
    paths = _saved(store, record)
    paths.lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert not is_running(paths)
    assert effective_state(record, paths) is RunState.CRASHED


def test_without_a_lock_file_the_pid_and_its_start_time_decide(store: RunStore) -> None:
    # records written before the runner took locks: fall back to the pid, guarded by start time
    alive = _saved(store, _record("r-7", pid=os.getpid()))
    assert is_running(alive)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # a process that started well after the run did is not the run's runner
        old = datetime.now(timezone.utc) - timedelta(minutes=5)
        reused = _saved(store, _record("r-8", pid=sleeper.pid, started=old))
        assert not is_running(reused)
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = _saved(store, _record("r-9", pid=sleeper.pid))
    assert not is_running(gone)
    assert effective_state(store.load("r-9"), gone) is RunState.CRASHED


def test_the_loop_lock_is_per_repository_and_loop(tmp_path: Path) -> None:
    common = tmp_path / "git"
    holder, _ = _hold("loop", common, "fix")
    try:
        with pytest.raises(CouldNotRun) as caught, loop_lock(common, "fix"):
            pass
        assert caught.value.message == (
            f"loop `fix` is already running in this repository (run r-1, pid {holder.pid})"
        )
        assert "--parallel" in (caught.value.hint or "")
        assert "outloop stop r-1" in (caught.value.hint or "")
        with loop_lock(common, "other", run_id="r-2"):
            pass
        with loop_lock(tmp_path / "another-repo", "fix"):
            pass
    finally:
        _kill(holder)
    with loop_lock(common, "fix"):
        pass


def test_loop_names_cannot_escape_the_lock_directory(tmp_path: Path) -> None:
    common = tmp_path / "git"
    with loop_lock(common, "../../evil name"):
        made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.lock"))
    assert made == ["git/outloop/locks/loop-.._.._evil_name.lock"]


def test_resolve_and_load_errors(store: RunStore) -> None:
    for run_id in ("20261127-100000-aaaaaa", "20261127-110000-bbbbbb"):
        _saved(store, _record(run_id, pid=None))
    assert store.resolve("20261127-10") == "20261127-100000-aaaaaa"
    assert store.resolve("bbbbbb") == "20261127-110000-bbbbbb"
    with pytest.raises(UsageError, match="matches 2 runs"):
        store.resolve("20261127")
    with pytest.raises(UsageError, match="no run matches `nope`") as caught:
        store.resolve("nope")
    assert caught.value.exit_code == 2
    store.paths("20261127-100000-aaaaaa").run_json.write_text("{not json")
    with pytest.raises(CouldNotRun, match="is not valid JSON"):
        store.load("20261127-100000-aaaaaa")
    store.paths("20261127-100000-aaaaaa").run_json.write_text('{"state": "running"}')
    with pytest.raises(CouldNotRun, match="not a run record"):
        store.load("20261127-100000-aaaaaa")


def test_lock_file_is_never_inherited(store: RunStore) -> None:
    paths = _saved(store, _record("r-10", pid=None))
    with run_lock(paths):
        fds = Path(f"/proc/{os.getpid()}/fd")
        held = [fd for fd in fds.iterdir() if _points_to(fd, paths.lock)]
        assert held
        for fd in held:
            assert not os.get_inheritable(int(fd.name))


def _points_to(link: Path, target: Path) -> bool:
    try:
        return link.readlink() == target
    except OSError:
        return False


def test_probing_is_fast(store: RunStore) -> None:
    paths = _saved(store, _record("r-11", pid=None))
    with run_lock(paths):
        started = time.monotonic()
        for _ in range(200):
            assert is_running(paths)
        assert time.monotonic() - started < 1.0
