"""Nothing the agent started survives the runner: a daemon it leaves behind dies with the sandbox.

The agent of a real `outloop run` double-forks a daemon into a session of its
own that keeps writing a heartbeat into the worktree, then the runner is
killed with SIGKILL (a crash: no cleanup runs). Sandboxed, the daemon lives
in the sandbox's PID namespace, whose init dies with the runner
(`--die-with-parent`), so the heartbeat stops. In the control run without
the sandbox the daemon goes on writing after the runner is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, loop_yaml, runs_dir, start_runner


def _beats(worktree: Path) -> int:
    try:
        return int((worktree / "heartbeat.txt").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _kill_runner_once_the_daemon_beats(make_repo: RepoFactory, sandbox: str) -> Path:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("survivor_agent.py"), "false", sandbox=sandbox)}
    )
    runner = start_runner(repo, "run", "fix", "--max-iterations", "1")
    worktree: Path | None = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and runner.poll() is None:
            records = list(runs_dir(repo).glob("*/run.json"))
            if records and worktree is None:
                worktree = Path(json.loads(records[0].read_text())["worktree"])
            if worktree is not None and _beats(worktree) > 3:
                break
            time.sleep(0.05)
        assert worktree is not None and _beats(worktree) > 3, runner.poll()
    finally:
        runner.kill()
        runner.communicate(timeout=30)
    return worktree


def _still_beating(worktree: Path, within: float) -> bool:
    before = _beats(worktree)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if _beats(worktree) > before:
            return True
    return False


def test_in_the_sandbox_the_daemon_dies_with_the_runner(make_repo: RepoFactory) -> None:
    worktree = _kill_runner_once_the_daemon_beats(make_repo, "bwrap")
    # a last write may land while the namespace is torn down; then it stops for good
    deadline = time.monotonic() + 20
    while _still_beating(worktree, 1.0):
        assert time.monotonic() < deadline, "the agent's daemon outlived the runner"
    assert not _still_beating(worktree, 2.0)


def test_control_without_the_sandbox_the_daemon_outlives_the_runner(
    make_repo: RepoFactory,
) -> None:
    worktree = _kill_runner_once_the_daemon_beats(make_repo, "none")
    try:
        assert _still_beating(worktree, 10.0)
    finally:
        # the agent itself outlives the killed runner too (it waits to be killed)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int((worktree / "agent.pid").read_text()), signal.SIGKILL)
        pid = int((worktree / "daemon.pid").read_text())
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pytest.fail("the control's daemon was already gone")
