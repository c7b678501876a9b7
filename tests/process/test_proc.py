"""The /proc reader, on real processes: start times, trees, pipes and environment markers."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from outloop_cli.process.proc import (
    ProcInfo,
    descendants,
    have_proc,
    leaving_for_good,
    pipe_holders,
    process_table,
    processes_in,
    processes_with_env,
    read_stat,
    start_ticks,
    started_at,
)

pytestmark = pytest.mark.skipif(not have_proc(), reason="needs a Linux /proc")

PY = sys.executable
ENV = {"PATH": os.environ.get("PATH", os.defpath)}

# a parent that starts a child that starts a grandchild, then all sleep;
# each writes "<pid> " to the file given as argv[1] once it runs
TREE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    depth = int(sys.argv[2])
    if depth:
        subprocess.Popen([sys.executable, __file__, sys.argv[1], str(depth - 1)])
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()} ")
    time.sleep(60)
    """
)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children a test starts, each in its own group; their groups are killed after."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


def sleeper(
    started: list[subprocess.Popen[bytes]],
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [PY, "-c", "import time; time.sleep(60)"],
        env=env or ENV,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    started.append(child)
    return child


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_child_has_a_start_time_and_its_group(started: list[subprocess.Popen[bytes]]) -> None:
    before = time.time()
    first = sleeper(started)
    second = sleeper(started)

    info = read_stat(first.pid)
    assert info is not None
    assert info.alive
    assert info.ppid == os.getpid()
    assert info.pgrp == first.pid  # start_new_session: its own group
    assert start_ticks(first.pid) == info.start_ticks
    # clock ticks are coarse (1/100 s), never backwards
    second_ticks = start_ticks(second.pid)
    assert second_ticks is not None
    assert second_ticks >= info.start_ticks
    when = started_at(first.pid)
    assert when is not None
    # boot time is given in whole seconds and the wall clock may have been
    # slewed since boot: near, not exact (the legacy liveness check allows 2 s)
    assert before - 3 <= when <= time.time() + 3


def test_our_own_start_time_is_in_the_past() -> None:
    when = started_at(os.getpid())
    assert when is not None
    assert when <= time.time() + 3


def test_an_exited_process_is_a_zombie_until_reaped_then_gone() -> None:
    child = subprocess.Popen([PY, "-c", "pass"], env=ENV, start_new_session=True)

    def is_zombie() -> bool:
        info = read_stat(child.pid)
        return info is not None and not info.alive

    wait_for(is_zombie)
    table = process_table()
    assert table is not None
    assert not table[child.pid].alive

    child.wait()
    assert read_stat(child.pid) is None
    assert start_ticks(child.pid) is None
    assert started_at(child.pid) is None


# the main thread ends (pthread_exit) while a second thread runs on
HEADLESS = textwrap.dedent(
    """
    import ctypes, sys, threading, time
    threading.Thread(target=time.sleep, args=(60,)).start()
    time.sleep(0.05)
    print("ready", flush=True)
    ctypes.CDLL(None).pthread_exit(None)
    """
)


def _main_thread_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_process_whose_main_thread_exited_lives_on_in_its_other_threads(
    started: list[subprocess.Popen[bytes]],
) -> None:
    child = subprocess.Popen(
        [PY, "-c", HEADLESS], env=ENV, start_new_session=True, stdout=subprocess.PIPE
    )
    started.append(child)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"

    wait_for(lambda: _main_thread_state(child.pid) == "Z")
    info = read_stat(child.pid)
    assert info is not None
    # the stat line says zombie; the process is not one
    assert info.state == "Z" and info.exiting
    assert info.alive
    table = process_table()
    assert table is not None and table[child.pid].alive
    assert not leaving_for_good(child.pid)


def test_only_a_process_past_its_exit_with_nothing_below_it_is_leaving_for_good(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    running = sleeper(started)
    wait_for(lambda: read_stat(running.pid) is not None)
    assert not leaving_for_good(running.pid)

    pids = tmp_path / "pids"
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    parent = subprocess.Popen([PY, str(script), str(pids), "1"], env=ENV, start_new_session=True)
    started.append(parent)
    wait_for(lambda: len(pids.read_text().split()) == 2 if pids.exists() else False)
    assert not leaving_for_good(parent.pid)

    ended = subprocess.Popen([PY, "-c", "pass"], env=ENV, start_new_session=True)
    started.append(ended)

    def is_zombie() -> bool:
        info = read_stat(ended.pid)
        return info is not None and not info.alive

    wait_for(is_zombie)
    # a zombie has run its exit through, and its children went to a reaper
    info = read_stat(ended.pid)
    assert info is not None and info.exiting
    assert leaving_for_good(ended.pid)
    ended.wait()
    # gone: nothing to tell
    assert not leaving_for_good(ended.pid)


def test_descendants_of_a_real_tree(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    script, pids_file = tmp_path / "tree.py", tmp_path / "pids"
    script.write_text(TREE)
    root = subprocess.Popen([PY, str(script), str(pids_file), "2"], env=ENV, start_new_session=True)
    started.append(root)
    stranger = sleeper(started)
    wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 3)
    tree = {int(word) for word in pids_file.read_text().split()}
    assert root.pid in tree

    table = process_table()
    assert table is not None
    below = descendants(table, [root.pid])

    assert set(below) == tree - {root.pid}
    assert stranger.pid not in below
    assert root.pid not in below
    # from a middle node only what is below it
    (middle,) = [pid for pid in below if table[pid].ppid == root.pid]
    assert set(descendants(table, [middle])) == tree - {root.pid, middle}


def test_a_cycle_in_a_snapshot_does_not_hang_the_walk() -> None:
    table = process_table()
    assert table is not None
    me = os.getpid()
    info = table[me]
    # pid reuse during a scan can make a process look like its own ancestor
    looped = {**table, me: ProcInfo(me, info.pgrp, info.state, info.start_ticks)}
    assert me not in descendants(looped, [me])


def test_a_process_holding_our_pipe_is_found(started: list[subprocess.Popen[bytes]]) -> None:
    read_end, write_end = os.pipe()
    try:
        holder = sleeper(started, pass_fds=(write_end,))
        bystander = sleeper(started)
        inode = os.fstat(read_end).st_ino

        holders = pipe_holders({inode})

        assert holder.pid in holders
        assert bystander.pid not in holders
        assert os.getpid() not in holders  # we hold both ends, and are never counted
    finally:
        os.close(read_end)
        os.close(write_end)
    assert pipe_holders(set()) == []


def test_processes_are_found_by_their_environment_marker(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    run_id = secrets.token_hex(4)
    marked = {**ENV, "OUTLOOP_TEST_RUN": run_id}
    script, pids_file = tmp_path / "tree.py", tmp_path / "pids"
    script.write_text(TREE)
    # the marked process's child inherits the marker
    root = subprocess.Popen(
        [PY, str(script), str(pids_file), "1"], env=marked, start_new_session=True
    )
    started.append(root)
    other_run = sleeper(started, env={**ENV, "OUTLOOP_TEST_RUN": run_id + "0"})
    in_value = sleeper(started, env={**ENV, "OTHER": f"OUTLOOP_TEST_RUN={run_id}"})
    unmarked = sleeper(started)
    wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2)
    tree = sorted(int(word) for word in pids_file.read_text().split())

    found = processes_with_env("OUTLOOP_TEST_RUN", run_id)

    assert found == tree
    for stranger in (other_run, in_value, unmarked):
        assert stranger.pid not in found
    assert processes_with_env("OUTLOOP_TEST_RUN", secrets.token_hex(4)) == []


def test_a_process_whose_main_thread_exited_is_still_found_by_its_marker_cwd_and_pipe(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    # the main thread's /proc entry shows no environment, working directory or open
    # files once it has exited; the threads that still run show them
    run_id = secrets.token_hex(4)
    workdir = tmp_path / "worktree"
    workdir.mkdir()
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [PY, "-c", HEADLESS],
            env={**ENV, "OUTLOOP_TEST_RUN": run_id},
            cwd=workdir,
            start_new_session=True,
            stdout=subprocess.PIPE,
            pass_fds=(write_end,),
        )
        started.append(child)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        wait_for(lambda: _main_thread_state(child.pid) == "Z")
        with pytest.raises(OSError):
            Path(f"/proc/{child.pid}/environ").read_bytes()

        assert processes_with_env("OUTLOOP_TEST_RUN", run_id) == [child.pid]
        assert processes_in(workdir) == [child.pid]
        assert child.pid in pipe_holders({os.fstat(read_end).st_ino})
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_process_asking_is_never_among_those_found() -> None:
    # a runner started with a run's marker must not take itself for a leftover
    marker = secrets.token_hex(4)
    code = (
        "import os\n"
        "from outloop_cli.process.proc import processes_with_env\n"
        f"print(os.getpid() in processes_with_env('OUTLOOP_TEST_RUN', {marker!r}))\n"
    )
    env = {**ENV, "OUTLOOP_TEST_RUN": marker, "PYTHONPATH": str(Path(__file__).parents[2])}
    asking = subprocess.run([PY, "-c", code], env=env, capture_output=True, check=True)
    assert asking.stdout == b"False\n"
