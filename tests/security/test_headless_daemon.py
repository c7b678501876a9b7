"""A daemon whose main thread has exited is still a daemon: the orphan sweep kills it.

The agent of a real `outloop run` (unsandboxed, so the host's orphan sweep is
the only thing between its daemon and the rest of the run; in the sandbox the
PID namespace ends with the turn) leaves a daemon behind whose main thread
called ``pthread_exit`` while a worker thread keeps writing ticks. Its stat
line says zombie. The runner must judge a process by all its threads: after
the run the ticks stop. The control run judges by the main thread alone, as
outloop did before, and the daemon goes on ticking after the run has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli_patched

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
