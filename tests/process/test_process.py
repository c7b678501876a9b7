"""The subprocess seam, with real processes: exit codes, logs, tails, killing whole trees.

Every test that starts a process tree has it write its pids to a file and
then checks ``/proc`` that none of them survived ``run_streamed``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli.errors import CouldNotRun, OutloopError
from outloop_cli.process.spawn import (
    CommandTimedOut,
    ProcessResult,
    ProgramNotFound,
    run_captured,
    run_streamed,
)
from tests.conftest import RepoFactory
from tests.support.e2e import counter_goal, loop_yaml, pid_alive

PY = sys.executable
REPO_ROOT = Path(__file__).resolve().parents[2]
# enough for a Python child to start; nothing here inherits outloop's env
BASE_ENV = {"PATH": os.environ.get("PATH", os.defpath)}


def py(code: str, *args: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code), *args]


@pytest.fixture
def pids_file(tmp_path: Path) -> Iterator[Path]:
    """Where a test's process tree writes its pids; whatever survives is killed after."""
    path = tmp_path / "pids"
    yield path
    for pid in read_pids(path):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(word) for word in path.read_text().split()]


def wait_for_pids(path: Path, count: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = read_pids(path)
        if len(pids) >= count:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"expected {count} pids in {path}, got {read_pids(path)}")


def survivors(pids: list[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid)]


# A leader that forks a child in its own group, whose child (the leader's
# grandchild) moves to a session of its own with setsid, as daemons do. All
# three append their pid to argv[1] and sleep. argv[2] is what the leader
# does then: "sleep", "exit" (exit 0 and leave the others running) or
# "chatty" (sleep while printing).
TREE = """
import os, sys, time
path, mode = sys.argv[1], sys.argv[2]

def note_pid():
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")

note_pid()
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        note_pid()
        time.sleep(300)
        os._exit(0)
    note_pid()
    time.sleep(300)
    os._exit(0)
while len(open(path).read().split()) < 3:
    time.sleep(0.01)
print("tree ready", flush=True)
if mode == "exit":
    sys.exit(0)
while True:
    time.sleep(0.1)
    if mode == "chatty":
        print("still working", flush=True)
"""


def run(argv: list[str], tmp_path: Path, **kwargs: object) -> ProcessResult:
    options: dict[str, object] = {
        "cwd": tmp_path,
        "env": BASE_ENV,
        "log_path": tmp_path / "out.log",
    }
    options.update(kwargs)
    return run_streamed(argv, **options)  # type: ignore[arg-type]


# -- exit codes and the log ------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [("pass", 0), ("raise SystemExit(3)", 3)])
def test_exit_code_is_reported(tmp_path: Path, code: str, expected: int) -> None:
    result = run(py(code), tmp_path)

    assert result.exit_code == expected
    assert result.ok is (expected == 0)
    assert not result.killed


def test_death_by_signal_is_a_negative_exit_code(tmp_path: Path) -> None:
    result = run(py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"), tmp_path)

    assert result.exit_code == -signal.SIGSEGV
    assert not result.ok


def test_stdout_and_stderr_are_merged_into_the_log_in_order(tmp_path: Path) -> None:
    code = """
        import sys
        for i in range(3):
            print(f"out {i}", flush=True)
            print(f"err {i}", file=sys.stderr, flush=True)
    """
    result = run(py(code), tmp_path)

    log = (tmp_path / "out.log").read_text()
    assert log == "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n"
    assert result.output_bytes == len(log)
    assert result.tail == log
    assert result.log_path == tmp_path / "out.log"


def test_log_is_written_while_the_process_runs(tmp_path: Path) -> None:
    # the child waits until it can see its own first line in the log: a
    # buffered log would deadlock here and be killed by the timeout
    log = tmp_path / "out.log"
    code = f"""
        import pathlib, time
        print("first line", flush=True)
        log = pathlib.Path({str(log)!r})
        while "first line" not in log.read_text():
            time.sleep(0.01)
        print("saw it", flush=True)
    """
    result = run(py(code), tmp_path, timeout=10)

    assert result.ok
    assert log.read_text() == "first line\nsaw it\n"


def test_log_in_a_missing_directory_is_created_and_append_keeps_earlier_output(
    tmp_path: Path,
) -> None:
    log = tmp_path / "deep" / "er" / "out.log"
    run(py("print('one')"), tmp_path, log_path=log)
    run(py("print('two')"), tmp_path, log_path=log, append=True)

    assert log.read_text() == "one\ntwo\n"


def test_tail_is_bounded_and_ends_with_the_last_output(tmp_path: Path) -> None:
    code = """
        import sys
        for i in range(100_000):
            sys.stdout.write(f"line {i}\\n")
    """
    result = run(py(code), tmp_path, tail_bytes=1000)

    assert result.ok
    assert result.output_bytes == (tmp_path / "out.log").stat().st_size > 500_000
    assert len(result.tail.encode()) <= 1000
    assert result.tail.endswith("line 99999\n")


def test_tail_does_not_start_inside_a_multibyte_character(tmp_path: Path) -> None:
    # 3-byte characters and a tail of 1000 bytes: the cut lands mid-character
    result = run(py("print('€' * 10_000, end='')"), tmp_path, tail_bytes=1000)

    assert "\ufffd" not in result.tail
    assert set(result.tail) == {"€"}


def test_tail_bytes_zero_keeps_no_tail(tmp_path: Path) -> None:
    result = run(py("print('hello')"), tmp_path, tail_bytes=0)

    assert result.tail == ""
    assert result.output_bytes == 6


def test_transform_sees_output_before_log_tail_and_callback(tmp_path: Path) -> None:
    seen: list[bytes] = []
    result = run(
        py("print('token=hunter2')"),
        tmp_path,
        transform=lambda chunk: chunk.replace(b"hunter2", b"***"),
        on_output=seen.append,
    )

    assert (tmp_path / "out.log").read_text() == "token=***\n"
    assert result.tail == "token=***\n"
    assert b"".join(seen) == b"token=***\n"


def test_a_failing_transform_kills_the_process_and_is_raised(
    tmp_path: Path, pids_file: Path
) -> None:
    def explode(chunk: bytes) -> bytes:
        raise RuntimeError("masking failed")

    with pytest.raises(RuntimeError, match="masking failed"):
        run([PY, "-c", TREE, str(pids_file), "sleep"], tmp_path, transform=explode, timeout=30)

    pids = read_pids(pids_file)
    assert len(pids) == 3
    assert survivors(pids) == []
    assert "killed: output handling failed" in (tmp_path / "out.log").read_text()


# -- killing whole trees ------------------------------------------------------------


def test_timeout_kills_the_whole_tree_including_a_setsid_grandchild(
    tmp_path: Path, pids_file: Path
) -> None:
    started = time.monotonic()
    result = run([PY, "-c", TREE, str(pids_file), "sleep"], tmp_path, timeout=2, kill_grace=1)

    assert result.timed_out and result.killed and not result.ok
    assert not result.idle_timed_out and not result.cancelled
    assert result.exit_code == -signal.SIGTERM
    pids = read_pids(pids_file)
    assert len(pids) == 3
    assert survivors(pids) == []
    # SIGTERM was enough: no grace period was waited out
    assert time.monotonic() - started < 2 + 3
    log = (tmp_path / "out.log").read_text()
    assert log.startswith("tree ready\n")
    assert "[outloop] killed: still running after 2s (timeout)" in log


def test_a_tree_that_ignores_sigterm_gets_sigkill_after_the_grace(
    tmp_path: Path, pids_file: Path
) -> None:
    code = """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            os.setsid()
            with open(sys.argv[1], "a") as f:
                f.write(f"{os.getpid()}\\n")
            time.sleep(300)
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\\n")
        print("ignoring SIGTERM", flush=True)
        time.sleep(300)
    """
    started = time.monotonic()
    result = run(py(code, str(pids_file)), tmp_path, timeout=1.5, kill_grace=0.5)

    assert result.timed_out
    assert result.exit_code == -signal.SIGKILL
    assert survivors(wait_for_pids(pids_file, 2)) == []
    assert time.monotonic() - started < 1.5 + 0.5 + 3
    assert "still running 0.5s after SIGTERM: sent SIGKILL" in (tmp_path / "out.log").read_text()


def test_sigterm_lets_the_agent_clean_up(tmp_path: Path) -> None:
    code = """
        import signal, sys, time
        def bye(*_):
            print("cleaning up", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("working", flush=True)
        time.sleep(300)
    """
    result = run(py(code), tmp_path, timeout=1)

    assert result.timed_out
    # the child's own exit code, after its handler ran; still not ok
    assert result.exit_code == 0
    assert not result.ok
    assert (tmp_path / "out.log").read_text() == (
        "working\n[outloop] killed: still running after 1s (timeout)\ncleaning up\n"
    )


def test_idle_timeout_kills_a_silent_tree(tmp_path: Path, pids_file: Path) -> None:
    result = run([PY, "-c", TREE, str(pids_file), "sleep"], tmp_path, timeout=60, idle_timeout=1)

    assert result.idle_timed_out and not result.timed_out
    assert result.duration < 10
    assert survivors(read_pids(pids_file)) == []
    assert "[outloop] killed: no output for 1s (idle_timeout)" in (tmp_path / "out.log").read_text()


def test_output_keeps_idle_timeout_away(tmp_path: Path) -> None:
    code = """
        import time
        for _ in range(20):
            print("tick", flush=True)
            time.sleep(0.1)
    """
    # twice as long as the idle timeout, never silent for long
    result = run(py(code), tmp_path, idle_timeout=1, timeout=30)

    assert result.ok
    assert result.tail.count("tick") == 20


def test_output_that_the_transform_drops_still_counts_as_activity(tmp_path: Path) -> None:
    code = """
        import time
        for _ in range(20):
            print("noise", flush=True)
            time.sleep(0.1)
    """
    result = run(py(code), tmp_path, idle_timeout=1, transform=lambda chunk: b"")

    assert result.ok
    assert result.output_bytes == 0


def test_leftovers_are_killed_when_the_leader_exits_zero(tmp_path: Path, pids_file: Path) -> None:
    result = run([PY, "-c", TREE, str(pids_file), "exit"], tmp_path, timeout=30)

    assert result.exit_code == 0
    assert result.ok
    pids = read_pids(pids_file)
    assert len(pids) == 3
    assert survivors(pids) == []
    assert "the command left running after it exited" in (tmp_path / "out.log").read_text()


def test_a_descendant_holding_the_pipe_open_cannot_hang_the_caller(
    tmp_path: Path, pids_file: Path
) -> None:
    # a double-forked daemon: its parent exits at once, so it is reparented
    # away from the tree before anyone can see where it came from; it keeps
    # stdout open and keeps writing
    code = """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open(sys.argv[1], "a") as f:
                    f.write(f"{os.getpid()}\\n")
                while True:
                    print("daemon", flush=True)
                    time.sleep(0.05)
            os._exit(0)
        os.wait()
        while not os.path.exists(sys.argv[1]) or not open(sys.argv[1]).read().strip():
            time.sleep(0.01)
    """
    started = time.monotonic()
    result = run(py(code, str(pids_file)), tmp_path, timeout=30)

    assert result.exit_code == 0
    assert time.monotonic() - started < 8
    assert survivors(wait_for_pids(pids_file, 1)) == []
    assert (
        "killed 1 process(es) that escaped the tree and kept its output open"
        in (tmp_path / "out.log").read_text()
    )


def test_a_child_that_left_the_group_is_killed_after_its_parent_exits(
    tmp_path: Path, pids_file: Path
) -> None:
    # the child leaves the group with setsid and loses its parent when the
    # leader exits; the tree was seen while the leader still ran
    code = """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            os.close(1)
            os.close(2)
            with open(sys.argv[1], "a") as f:
                f.write(f"{os.getpid()}\\n")
            time.sleep(300)
            os._exit(0)
        time.sleep(1.5)
    """
    result = run(py(code, str(pids_file)), tmp_path, timeout=30)

    assert result.exit_code == 0
    assert survivors(wait_for_pids(pids_file, 1)) == []
    assert "killed 1 process(es) the command left running" in (tmp_path / "out.log").read_text()


def test_cancel_event_kills_the_tree(tmp_path: Path, pids_file: Path) -> None:
    cancel = threading.Event()

    def cancel_when_started() -> None:
        wait_for_pids(pids_file, 3)
        cancel.set()

    helper = threading.Thread(target=cancel_when_started)
    helper.start()
    result = run([PY, "-c", TREE, str(pids_file), "chatty"], tmp_path, cancel=cancel, timeout=60)
    helper.join()

    assert result.cancelled and result.killed
    assert not result.timed_out and not result.idle_timed_out
    assert survivors(read_pids(pids_file)) == []
    assert "[outloop] killed: cancelled" in (tmp_path / "out.log").read_text()


def test_cancel_before_start_starts_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"

    result = run(py(f"open({str(marker)!r}, 'w')"), tmp_path, cancel=cancel)

    assert result.exit_code is None
    assert result.cancelled
    assert not marker.exists()
    assert (tmp_path / "out.log").read_text() == "[outloop] not started: cancelled\n"


# Runs run_streamed in a fresh interpreter, so that Ctrl-C (a real SIGINT)
# and the memory measurement concern only that interpreter.
INTERRUPTED_RUNNER = """
import os, signal, sys, threading, time
from pathlib import Path
from outloop_cli.process.spawn import run_streamed

pids = Path(sys.argv[1])
tree, grace, presses = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])

def press_ctrl_c():
    while len(pids.read_text().split()) < 3 if pids.exists() else True:
        time.sleep(0.01)
    time.sleep(0.2)
    for _ in range(presses):
        # what a terminal does: SIGINT to the foreground process group
        os.killpg(os.getpgrp(), signal.SIGINT)
        time.sleep(0.3)

threading.Thread(target=press_ctrl_c, daemon=True).start()
started = time.monotonic()
try:
    run_streamed(
        [sys.executable, "-c", tree, str(pids), "sleep"],
        cwd=Path.cwd(), env={"PATH": os.environ["PATH"]},
        log_path=Path("out.log"), timeout=120, kill_grace=grace,
    )
except KeyboardInterrupt:
    print(f"KeyboardInterrupt re-raised after {time.monotonic() - started:.1f}s")
else:
    print("returned normally")
"""

STUBBORN_TREE = TREE.replace(
    "import os, sys, time",
    "import os, signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)",
)


def run_in_own_group(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        # a session of its own, so its killpg(SIGINT) cannot reach pytest
        start_new_session=True,
    )


def test_ctrl_c_kills_the_tree_and_is_re_raised(tmp_path: Path, pids_file: Path) -> None:
    done = run_in_own_group(INTERRUPTED_RUNNER, str(pids_file), TREE, "5", "1", cwd=tmp_path)

    assert "KeyboardInterrupt re-raised" in done.stdout, done.stdout + done.stderr
    pids = read_pids(pids_file)
    assert len(pids) == 3
    assert survivors(pids) == []
    # the terminal's SIGINT reached the runner only: the child sits in its own
    # session and was killed by the runner's SIGTERM
    log = (tmp_path / "out.log").read_text()
    assert "[outloop] killed: interrupted (Ctrl-C)" in log


def test_second_ctrl_c_skips_the_grace(tmp_path: Path, pids_file: Path) -> None:
    # the tree ignores SIGTERM and the grace is 30s; the second Ctrl-C means "now"
    done = run_in_own_group(
        INTERRUPTED_RUNNER, str(pids_file), STUBBORN_TREE, "30", "2", cwd=tmp_path
    )

    assert "KeyboardInterrupt re-raised" in done.stdout, done.stdout + done.stderr
    seconds = float(done.stdout.split("after ")[1].rstrip("s\n"))
    assert seconds < 10
    assert survivors(read_pids(pids_file)) == []


FLOOD_RUNNER = """
import os, resource, sys
from pathlib import Path
from outloop_cli.process.spawn import run_streamed

flood = '''
import os
block = (b"x" * 1023 + b"\\\\n") * 1024
for _ in range(200):
    os.write(1, block)
'''
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = run_streamed(
    [sys.executable, "-c", flood], cwd=Path.cwd(), env={}, log_path=Path("flood.log"),
    timeout=120,
)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.exit_code, result.output_bytes, len(result.tail), before, after)
"""


@pytest.mark.slow
def test_a_200_mb_flood_is_streamed_to_disk_in_bounded_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [PY, "-c", FLOOD_RUNNER],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    exit_code, output_bytes, tail_chars, before_kib, after_kib = map(int, done.stdout.split())

    assert exit_code == 0
    assert output_bytes == 200 * 1024 * 1024
    assert (tmp_path / "flood.log").stat().st_size == output_bytes
    assert tail_chars <= 64 * 1024
    # peak RSS of the runner grew by less than 20 MiB while 200 MiB went through
    assert after_kib - before_kib < 20 * 1024, (before_kib, after_kib)


# -- starting -------------------------------------------------------------------------


def test_program_not_on_path(tmp_path: Path) -> None:
    with pytest.raises(ProgramNotFound) as caught:
        run(["no-such-agent-xyz", "--help"], tmp_path)

    error = caught.value
    assert isinstance(error, CouldNotRun)
    assert error.exit_code == 3
    assert error.message == "`no-such-agent-xyz` was not found on PATH"
    assert error.hint is not None
    assert "install `no-such-agent-xyz`" in error.hint
    assert BASE_ENV["PATH"] in error.hint
    # the log says why it is empty
    assert "could not start" in (tmp_path / "out.log").read_text()


def test_program_is_searched_on_the_childs_path_not_ours(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "only-here"
    tool.write_text("#!/bin/sh\necho found me\n")
    tool.chmod(0o755)

    result = run(["only-here"], tmp_path, env={"PATH": str(bin_dir)})
    assert result.ok
    assert result.tail == "found me\n"

    with pytest.raises(ProgramNotFound, match="environment has no PATH") as caught:
        run(["python3"], tmp_path, env={"PATH": ""})
    assert caught.value.hint == "set PATH for the command, or give the program's full path"


def test_missing_path_and_missing_interpreter_and_not_executable(tmp_path: Path) -> None:
    with pytest.raises(ProgramNotFound, match="does not exist") as caught:
        run(["./missing.sh"], tmp_path)
    assert caught.value.hint is not None
    assert str(tmp_path) in caught.value.hint

    script = tmp_path / "script.sh"
    script.write_text("#!/no/such/interpreter\necho hi\n")
    script.chmod(0o755)
    with pytest.raises(CouldNotRun, match="interpreter was not found") as caught_interp:
        run([str(script)], tmp_path)
    assert caught_interp.value.hint is not None
    assert "#!/no/such/interpreter" in caught_interp.value.hint

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/bin/sh\n")
    with pytest.raises(CouldNotRun, match="is not executable") as caught_exec:
        run(["tool"], tmp_path, env={"PATH": str(bin_dir)})
    assert caught_exec.value.hint == f"make it executable: chmod +x {bin_dir / 'tool'}"


def test_missing_working_directory(tmp_path: Path) -> None:
    with pytest.raises(CouldNotRun, match=r"working directory .* does not exist"):
        run(py("pass"), tmp_path, cwd=tmp_path / "gone")


def test_bad_arguments_are_programming_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="argv must not be empty"):
        run([], tmp_path)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        run(py("pass"), tmp_path, timeout=0)
    with pytest.raises(ValueError, match="idle_timeout must be > 0"):
        run(py("pass"), tmp_path, idle_timeout=-1)


# -- what the child gets --------------------------------------------------------------


def test_env_is_exactly_what_the_caller_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTLOOP_TEST_SECRET", "must-not-leak")
    env = {"ONLY": "this", "AND": "that=with=equals"}

    result = run(["/bin/cat", "/proc/self/environ"], tmp_path, env=env)

    assert result.ok
    entries = (tmp_path / "out.log").read_bytes().split(b"\0")
    assert sorted(e for e in entries if e) == [b"AND=that=with=equals", b"ONLY=this"]


def test_cwd_is_where_the_child_runs(tmp_path: Path) -> None:
    sub = tmp_path / "work dir"
    sub.mkdir()
    result = run(py("import os; print(os.getcwd())"), tmp_path, cwd=sub)
    assert result.tail == f"{sub}\n"


def test_stdin_data_reaches_the_child_and_without_it_stdin_is_empty(tmp_path: Path) -> None:
    result = run(py("import sys; print(sys.stdin.read().upper())"), tmp_path, stdin_data=b"abc")
    assert result.tail == "ABC\n"

    # no stdin: the child reads EOF at once instead of waiting on our terminal
    result = run(py("import sys; print(repr(sys.stdin.read()))"), tmp_path, timeout=10)
    assert result.ok
    assert result.tail == "''\n"


def test_big_stdin_and_big_output_at_once_do_not_deadlock(tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    # copies stdin to stdout as it reads: both pipes are full at the same time
    code = """
        import sys
        while chunk := sys.stdin.buffer.read1(65536):
            sys.stdout.buffer.write(chunk)
    """
    result = run(py(code), tmp_path, stdin_data=data, timeout=30)

    assert result.ok
    assert (tmp_path / "out.log").read_bytes() == data


def test_child_that_ignores_stdin_does_not_break_the_feed(tmp_path: Path) -> None:
    result = run(py("print('done')"), tmp_path, stdin_data=b"x" * (4 * 1024 * 1024), timeout=30)
    assert result.ok
    assert result.tail == "done\n"


def test_child_runs_in_a_new_session(tmp_path: Path) -> None:
    result = run(
        py("import os; print(os.getsid(0) == os.getpid(), os.getpgrp() == os.getpid())"), tmp_path
    )
    assert result.tail == "True True\n"


# -- run_captured ---------------------------------------------------------------------


def test_captured_keeps_stdout_and_stderr_apart(tmp_path: Path) -> None:
    code = "import sys; print('to out'); print('to err', file=sys.stderr); sys.exit(4)"
    done = run_captured(py(code), cwd=tmp_path, env=BASE_ENV, stdin_data=None)

    assert done.returncode == 4
    assert done.stdout == b"to out\n"
    assert done.stderr == b"to err\n"
    assert done.args == py(code)


def test_captured_with_stdin_and_exact_env(tmp_path: Path) -> None:
    done = run_captured(
        ["/bin/cat", "/proc/self/environ", "-"], cwd=tmp_path, env={"X": "1"}, stdin_data=b"tail"
    )
    assert done.stdout == b"X=1\0tail"


def test_captured_timeout_kills_the_tree_and_keeps_partial_output(
    tmp_path: Path, pids_file: Path
) -> None:
    with pytest.raises(CommandTimedOut) as caught:
        run_captured(
            [PY, "-c", TREE, str(pids_file), "sleep"], cwd=tmp_path, env=BASE_ENV, timeout=1.5
        )

    error = caught.value
    assert isinstance(error, OutloopError)
    assert error.stdout == b"tree ready\n"
    assert "did not finish within 1.5s and was killed" in error.message
    assert survivors(read_pids(pids_file)) == []


def test_captured_program_not_found(tmp_path: Path) -> None:
    with pytest.raises(ProgramNotFound):
        run_captured(["no-such-tool-xyz"], cwd=tmp_path, env=BASE_ENV)


def test_captured_leftovers_are_killed(tmp_path: Path, pids_file: Path) -> None:
    done = run_captured(
        [PY, "-c", TREE, str(pids_file), "exit"], cwd=tmp_path, env=BASE_ENV, timeout=30
    )
    assert done.returncode == 0
    assert survivors(read_pids(pids_file)) == []


def test_result_is_plain_data(tmp_path: Path) -> None:
    result = run(py("print('x')"), tmp_path)
    # the engine stores these facts in run.json
    assert json.loads(json.dumps({"exit": result.exit_code, "bytes": result.output_bytes})) == {
        "exit": 0,
        "bytes": 2,
    }


# -- orphans (adopt_orphans) ------------------------------------------------------------

# A fresh interpreter that adopts orphans, as the outloop CLI does: every
# child there is started by process/spawn.py.
ADOPTING_RUNNER = """
import json, os, sys, time
from pathlib import Path
from outloop_cli.process.spawn import run_captured, run_streamed
from outloop_cli.process.supervise import adopt_orphans

# a daemon done right: double fork, setsid, stdio to /dev/null, so neither
# the tree walk nor the pipe can find it; it lives argv[2] seconds
DAEMONIZE = '''
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\\\\n")
        time.sleep(float(sys.argv[2]))
        os._exit(0)
    os._exit(0)
os.wait()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
print("daemon started", flush=True)
'''

def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

def zombie_children():
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            if int(fields[1]) == me and fields[0] == "Z":
                found.append(int(entry.name))
    return found

env = {"PATH": os.environ["PATH"]}
report = {"adopting": adopt_orphans()}

# an agent's daemon dies with the agent's turn
run_streamed([sys.executable, "-c", DAEMONIZE, "agent.pid", "300"], cwd=Path.cwd(), env=env,
             log_path=Path("agent.log"), timeout=30)
agent_daemon = int(Path("agent.pid").read_text())
report["agent_daemon_alive"] = alive(agent_daemon)

# git's own daemon (auto gc) may finish its work; once it exits it is reaped
run_captured([sys.executable, "-c", DAEMONIZE, "tool.pid", "1"], cwd=Path.cwd(), env=env, timeout=30)
tool_daemon = int(Path("tool.pid").read_text())
report["tool_daemon_alive_after_its_command"] = alive(tool_daemon)
time.sleep(1.5)
run_streamed([sys.executable, "-c", "pass"], cwd=Path.cwd(), env=env, log_path=Path("x.log"))
report["tool_daemon_alive_later"] = alive(tool_daemon)
report["zombies"] = zombie_children()
print(json.dumps(report))
"""


def test_adopted_orphans_of_an_agent_are_killed_and_reaped(tmp_path: Path) -> None:
    done = subprocess.run(
        [PY, "-c", ADOPTING_RUNNER],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    for name in ("agent.pid", "tool.pid"):
        for pid in read_pids(tmp_path / name):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report == {
        "adopting": True,
        "agent_daemon_alive": False,
        "tool_daemon_alive_after_its_command": True,
        "tool_daemon_alive_later": False,
        "zombies": [],
    }
    assert (
        "killed 1 orphaned process(es) that escaped the tree"
        in (tmp_path / "agent.log").read_text()
    )


DAEMON_AGENT = """
import os, pathlib, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        with open(os.environ["PID_FILE"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(300)
    os._exit(0)
os.wait()
while not os.path.exists(os.environ["PID_FILE"]):
    time.sleep(0.01)
pathlib.Path("counter.txt").write_text("1\\n")
print("started a dev server and fixed the counter")
"""


def test_a_real_run_under_an_adopting_cli_leaves_no_daemon(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "daemon.pid"
    loop = loop_yaml(
        [PY, "daemon_agent.py"],
        counter_goal(1),
        agent__env={"PID_FILE": str(pid_file)},
        # unsandboxed on purpose: the daemon reports its host pid, which a sandbox's PID
        # namespace would hide from it; this is outloop's own orphan adoption on the host
        sandbox="none",
    )
    repo = make_repo({"daemon_agent.py": DAEMON_AGENT, ".outloop/fix.yml": loop})
    code = (
        "import sys\n"
        "from outloop_cli.process.supervise import adopt_orphans\n"
        "assert adopt_orphans()\n"
        "from outloop_cli.main import main\n"
        "sys.exit(main(['run', 'fix', '--json']))\n"
    )
    done = subprocess.run(
        [PY, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    daemons = read_pids(pid_file)
    alive = survivors(daemons)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stop_reason"] == "goal_met"
    assert len(daemons) == 1
    assert alive == []
