"""A daemon an agent leaves inside its sandbox dies with the turn, before the goal looks.

The agent of a real `outloop run` (default sandbox) starts a daemon that keeps
rewriting a file in the worktree, then exits 0. The goal, in the sandbox too,
reads that file twice, 0.6 s apart, and holds only when it did not change: a
daemon still at work while the goal checks (and while outloop commits) would
make what was checked differ from what is kept.

No sweep of the machine's process table follows a sandboxed child
(``Orphans.REAP`` in process/supervise.py), because bubblewrap's
``--die-with-parent`` kills the sandbox's init when bubblewrap exits at the end
of the turn, and with it everything in its PID namespace. Two more layers would
catch the init too: the tree's process group is killed once its leader has
exited, and whatever still holds the turn's output pipe is killed. So the
second run turns those two off and the daemon still dies, by
``--die-with-parent`` alone; the control turns all three off, and the daemon
outlives the turn: the goal sees the file change, and it is still changing
after the run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

from tests.conftest import RepoFactory
from tests.support.e2e import PY, agent_cmd, loop_yaml, run_cli_patched, runs_dir

STILL_GOAL = (
    f"{PY} -c \"import pathlib,sys,time; p=pathlib.Path('heartbeat.txt'); "
    "a=p.read_text() if p.exists() else ''; time.sleep(0.6); "
    "b=p.read_text() if p.exists() else ''; print('heartbeat', repr(a), repr(b)); "
    'sys.exit(0 if a and a == b else 1)"'
)

_OTHER_LAYERS_OFF = (
    "from outloop_cli.process import supervise\n"
    "supervise.Child._kill_leftovers = lambda self, say: self.proc.wait()\n"
    "supervise.Child._kill_pipe_holders = lambda self, pipes, say: None\n"
)
_DIE_WITH_PARENT_OFF = (
    "from outloop_cli.sandbox import bwrap\n"
    "_wrap = bwrap.wrap\n"
    "def wrap(*args, **kwargs):\n"
    "    line = _wrap(*args, **kwargs)\n"
    "    line.remove('--die-with-parent')\n"
    "    return line\n"
    "bwrap.wrap = wrap\n"
)


def _run(
    make_repo: RepoFactory, marker: str, patches: str = ""
) -> tuple[int, dict[str, object], Path]:
    loop = loop_yaml(
        agent_cmd("survivor_agent.py", "--exit"),
        STILL_GOAL,
        agent__env={"DAEMON_MARK": marker},
        limits={"max_iterations": 1},
    )
    repo = make_repo({".outloop/fix.yml": loop})
    done = run_cli_patched(repo, patches, "run", "fix", "--json")
    # 3: the run stopped in error; only a daemon that outlived its turn causes that here
    assert done.returncode in (0, 1, 3), done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    (run_json,) = runs_dir(repo).glob("*/run.json")
    worktree = Path(json.loads(run_json.read_text())["worktree"])
    return done.returncode, record, worktree


def _changing(worktree: Path, within: float = 0.6) -> bool:
    before = (worktree / "heartbeat.txt").read_text()
    time.sleep(within)
    return (worktree / "heartbeat.txt").read_text() != before


def _kill_marked(marker: str) -> None:
    wanted = f"DAEMON_MARK={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            pass


def test_a_daemon_left_in_the_sandbox_dies_with_the_turn(make_repo: RepoFactory) -> None:
    marker = secrets.token_hex(8)
    try:
        code, record, worktree = _run(make_repo, marker)
        assert (code, record["stop_reason"]) == (0, "goal_met")
        assert not _changing(worktree)
    finally:
        _kill_marked(marker)


def test_die_with_parent_alone_ends_the_sandbox_with_the_turn(make_repo: RepoFactory) -> None:
    marker = secrets.token_hex(8)
    try:
        code, record, worktree = _run(make_repo, marker, _OTHER_LAYERS_OFF)
        assert (code, record["stop_reason"]) == (0, "goal_met")
        assert not _changing(worktree)
    finally:
        _kill_marked(marker)


def test_control_with_none_of_them_the_daemon_outlives_the_turn(make_repo: RepoFactory) -> None:
    marker = secrets.token_hex(8)
    try:
        code, record, worktree = _run(make_repo, marker, _OTHER_LAYERS_OFF + _DIE_WITH_PARENT_OFF)
        # the goal saw the file change; or the daemon's writes raced outloop's own restore of
        # the worktree (git: "unable to create file heartbeat.txt: File exists"), the harm a
        # survivor does in another form
        assert (code, record["stop_reason"]) in {(1, "max_iterations"), (3, "error")}
        assert _changing(worktree)
    finally:
        _kill_marked(marker)
