"""The agent cannot ptrace anything outside the sandbox, not even as root.

A victim process runs beside the runner (as the user, outside any sandbox);
the agent of a real `outloop run` is given its pid and calls
`ptrace(PTRACE_ATTACH)` on it, which would let it read and change that
process's memory (a runner holds granted keys there). Sandboxed, the pid is
in no namespace the agent can see: the call fails with ESRCH. The control
run without the sandbox attaches, as root or wherever Yama allows it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, agent_report, loop_yaml, run_cli


@pytest.fixture
def victim() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def _attach(make_repo: RepoFactory, victim: int, sandbox: str) -> dict[str, Any]:
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("ptrace_agent.py", str(victim)), "false", sandbox=sandbox
            )
        }
    )
    done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    assert done.returncode == 1, done.stderr
    return agent_report(repo)


def _ptrace_allowed_here() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        return Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() == "0"
    except OSError:
        return True


def test_in_the_sandbox_the_agent_cannot_attach_to_a_process_outside(
    make_repo: RepoFactory, victim: int
) -> None:
    found = _attach(make_repo, victim, "bwrap")
    assert found["attached"] is False, found
    assert found["errno"] == os.strerror(3)  # ESRCH: no such process in its PID namespace


def test_control_without_the_sandbox_the_agent_attaches(
    make_repo: RepoFactory, victim: int
) -> None:
    found = _attach(make_repo, victim, "none")
    if _ptrace_allowed_here():
        assert found["attached"] is True, found
    else:
        # Yama's ptrace_scope keeps a normal user from attaching to a non-child
        assert found["attached"] is False and found["errno"] == os.strerror(1), found
