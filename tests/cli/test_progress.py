"""Progress: a live table on a terminal, one plain line per event otherwise."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.conftest import RepoFactory
from tests.support.e2e import PY, agent_cmd, counter_goal, loop_yaml, run_cli


def _run_on_a_terminal(repo: Path, *args: str) -> tuple[int, str]:
    primary, secondary = pty.openpty()
    env = dict(os.environ, COLUMNS="160", LINES="40", TERM="xterm-256color")
    proc = subprocess.Popen(
        [PY, "-m", "outloop_cli", *args],
        cwd=repo,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.1)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(primary)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_live_view_on_a_terminal_shows_loop_iteration_phase_and_goal(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )

    code, screen = _run_on_a_terminal(repo, "run", "fix")

    assert code == 0, screen
    assert "\x1b[" in screen, "no terminal control sequences: not a live view"
    for column in ("loop", "iteration", "phase", "elapsed", "last goal"):
        assert column in screen
    assert "2/5" in screen
    assert "✅" in screen and "goal_met" in screen


def test_plain_lines_when_not_a_terminal(make_repo: RepoFactory) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0
    assert "\x1b[" not in done.stderr
    lines = done.stderr.splitlines()
    assert any("baseline: goal not met" in line for line in lines)
    assert any("iteration 2/5: goal met" in line for line in lines)
    assert all(line.startswith(("[fix ", "✅", "   ")) for line in lines if line), lines
