"""A process whose main thread has exited is still running: outloop finds it and kills it.

A process whose main thread called ``pthread_exit`` while other threads run
on shows a zombie in ``/proc/<pid>/stat``, and no environment, working
directory or open files in ``/proc/<pid>``: only its threads (``task/<tid>``)
show them. Agents of real `outloop run`s (unsandboxed, so the host's process
supervision is all that stands between them and the rest of the run; in the
sandbox the PID namespace ends with the turn) use that twice:

- a daemon left behind after the turn, which keeps writing ticks: the orphan
  sweep judges a process by all its threads, and after the run the ticks stop;
  the control judges by the main thread alone, as outloop did before, and the
  daemon goes on ticking after the run has ended;
- the agent of a run whose runner was killed (SIGKILL): resume finds a crashed
  run's processes by their environment marker, read through a live thread, and
  kills it; the control reads ``/proc/<pid>`` alone, as before, and the agent
  survives the resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from tests.conftest import RepoFactory
from tests.support.e2e import (
    agent_cmd,
    counter_goal,
    loop_yaml,
    run_cli_patched,
    runs_dir,
    start_runner,
    wait_for,
)

# the control: a process counts as alive by its main thread's state only
_JUDGE_BY_MAIN_THREAD = (
    "from outloop_cli.process import proc\n"
    "proc.ProcInfo.alive = property(lambda self: self.state not in ('Z', 'X', 'x'))\n"
)


def _run(
    make_repo: RepoFactory, tmp_path: Path, *, control: bool
) -> tuple[dict[str, object], Path]:
    ticks = tmp_path / "ticks"
    loop = loop_yaml(
        agent_cmd("headless_daemon_agent.py"),
        counter_goal(1),
        agent__env={"TICKS": str(ticks)},
        sandbox="none",
    )
    repo = make_repo({".outloop/fix.yml": loop})
    done = run_cli_patched(repo, _JUDGE_BY_MAIN_THREAD if control else "", "run", "fix", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), ticks


def _ticking(ticks: Path, within: float = 0.6) -> bool:
    before = ticks.stat().st_size
    time.sleep(within)
    return ticks.stat().st_size > before


def _kill_tickers(tmp_path: Path) -> None:
    # the daemon of the control run, found by the pid it wrote (its main thread is gone,
    # and with it what /proc shows of its environment)
    pid_file = tmp_path / "ticks.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_the_sweep_kills_a_daemon_whose_main_thread_has_exited(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    try:
        record, ticks = _run(make_repo, tmp_path, control=False)
        assert record["stop_reason"] == "goal_met"
        assert ticks.exists()
        assert not _ticking(ticks)
    finally:
        _kill_tickers(tmp_path)


def test_control_judged_by_its_main_thread_the_daemon_outlives_the_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    try:
        record, ticks = _run(make_repo, tmp_path, control=True)
        assert record["stop_reason"] == "goal_met"
        assert _ticking(ticks)
    finally:
        _kill_tickers(tmp_path)


# the control of the resume below: /proc read through the main thread alone, as before
_MAIN_THREAD_VIEW_ONLY = (
    "from outloop_cli.process import proc\nproc._views = lambda entry: iter([entry])\n"
)


def _threads_running(pid: int) -> bool:
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for thread in threads:
        try:
            stat = (thread / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            return True
    return False


def _crash_with_a_headless_agent(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, str, int]:
    marker = tmp_path / "agent-pid"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("once_sleepy_agent.py", str(marker), "--headless"),
                counter_goal(2),
                sandbox="none",
            )
        }
    )
    runner = start_runner(repo)
    wait_for(marker)
    agent = int(marker.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the agent's main thread never ended"
        time.sleep(0.02)
    runner.kill()
    runner.communicate(timeout=30)
    assert _threads_running(agent), "the agent should outlive a SIGKILLed runner"
    (run_id,) = (p.name for p in runs_dir(repo).iterdir())
    return repo, run_id, agent


def test_resume_kills_a_crashed_runs_agent_whose_main_thread_has_exited(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, run_id, agent = _crash_with_a_headless_agent(make_repo, tmp_path)
    try:
        resumed = run_cli_patched(repo, "", "resume", run_id)
        assert resumed.returncode == 0, resumed.stderr
        assert not _threads_running(agent), "resume left the crashed run's agent running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent, signal.SIGKILL)


def test_control_reading_the_main_thread_alone_resume_misses_it(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo, run_id, agent = _crash_with_a_headless_agent(make_repo, tmp_path)
    try:
        run_cli_patched(repo, _MAIN_THREAD_VIEW_ONLY, "resume", run_id)
        assert _threads_running(agent)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent, signal.SIGKILL)
