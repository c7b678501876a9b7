"""An agent cannot widen a later sandbox's view by planting a ``#!`` line.

The sandbox shows each command's programs their install roots, found from the
loop's commands and PATH (``bwrap._program_roots``), and a script's ``#!``
brings its interpreter's root. Here the goal runs ``probe-tool``, found on PATH
in a directory the loop lets the agent write (``sandbox.write``, as a user
would a tool cache on PATH). The agent of a real `outloop run` plants
``probe-tool`` there with a ``#!`` naming a program inside a directory of the
host that no sandbox shows, next to a secret. Were the view found anew for
each sandbox, the next goal would run with that directory in view and print
the secret. outloop finds it once per command and run (``ProgramRoots``),
before the agent's first turn: the goal cannot reach it. The control finds
the view anew for every sandbox, and the secret comes out in the goal's log.

The agent's own command line changes every turn (``{iteration}``, a prompt):
the view is found once per program it names, not per command line, so the
agent's next turn cannot follow a ``#!`` line its last turn planted either.
The control keeps one memo per whole command line, and the second turn runs
with the vault in view.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import PY, loop_yaml, run_cli_patched, runs_dir

_FIND_ANEW = (
    "from outloop_cli.sandbox import bwrap\n"
    "bwrap.ProgramRoots.find = lambda self, *args: bwrap._program_roots(*args)\n"
)


# the memo as it was kept before: one entry per whole command line
_MEMO_PER_COMMAND_LINE = (
    "from outloop_cli.sandbox import bwrap\n"
    "_seen = {}\n"
    "def find(self, programs, args, path_env, keep_out):\n"
    "    key = (tuple(programs), tuple(args), path_env, tuple(keep_out))\n"
    "    if key not in _seen:\n"
    "        _seen[key] = bwrap._program_roots(programs, args, path_env, keep_out)\n"
    "    return list(_seen[key])\n"
    "bwrap.ProgramRoots.find = find\n"
)


def _vault(tmp_path: Path) -> tuple[str, Path, Path]:
    """(secret, a script beside it that prints it, the tools directory on PATH)."""
    secret = f"SECRET-{secrets.token_hex(12)}"
    hidden = tmp_path / "opt" / "vault"
    (hidden / "bin").mkdir(parents=True)
    (hidden / "secret.txt").write_text(secret + "\n")
    reveal = hidden / "bin" / "reveal"
    reveal.write_text(f"#!/bin/sh\ncat {hidden / 'secret.txt'}\n")
    reveal.chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    return secret, reveal, tools


def _plant(tools: Path, reveal: Path) -> str:
    return (
        "import os, pathlib; "
        f"p = pathlib.Path({str(tools / 'probe-tool')!r}); "
        f"p.write_text('#!{reveal}\\n'); os.chmod(p, 0o755); "
        "pathlib.Path('planted.txt').write_text('1')"
    )


def _attack(make_repo: RepoFactory, tmp_path: Path, *, control: bool) -> tuple[str, str]:
    secret, reveal, tools = _vault(tmp_path)
    loop = loop_yaml(
        [PY, "-c", _plant(tools, reveal)],
        "probe-tool",
        sandbox={"write": [str(tools)]},
        limits={"max_iterations": 1},
    )
    repo = make_repo({".outloop/fix.yml": loop})
    return secret, _run_and_read(repo, tools, _FIND_ANEW if control else "", "iter-001-goal.log")


_WITHOUT_THE_PATH_FENCE = (
    "import outloop_cli.sandbox.extra_paths as paths\npaths.outside_program_fences = lambda: []\n"
)


def _run_and_read(repo: Path, tools: Path, patch: str, log: str) -> str:
    """`outloop run fix` with ``tools`` first on PATH: one log of the run, and what it printed."""
    # a writable directory on outloop's own PATH is refused before anything runs (see
    # test_planted_programs.py); this memo is the layer behind that fence, so both the
    # attack and its control take the fence out, and only the memo differs between them
    done = run_cli_patched(
        repo,
        _WITHOUT_THE_PATH_FENCE + patch,
        "run",
        "fix",
        env={"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"},
    )
    assert done.returncode in (0, 1), done.stderr
    (run,) = runs_dir(repo).iterdir()
    return (run / "logs" / log).read_text() + done.stdout + done.stderr


def test_a_planted_interpreter_line_does_not_widen_the_goals_view(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    secret, seen = _attack(make_repo, tmp_path, control=False)
    assert secret not in seen
    # the goal did run the planted tool; its interpreter was not in view
    assert "probe-tool: not found" in seen


def test_control_found_anew_for_each_sandbox_the_view_widens(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    secret, seen = _attack(make_repo, tmp_path, control=True)
    assert secret in seen


def _agent_attack(make_repo: RepoFactory, tmp_path: Path, *, control: bool) -> tuple[str, str]:
    """Turn 1 runs ``probe-tool`` (not there yet) and plants it; turn 2 runs it again."""
    secret, reveal, tools = _vault(tmp_path)
    script = f"echo turn {{iteration}}\nprobe-tool\n{PY} plant.py"
    loop = loop_yaml(
        ["/bin/sh", "-c", script],
        "false",
        sandbox={"write": [str(tools)]},
        limits={"max_iterations": 2, "stall": 5},
    )
    repo = make_repo({".outloop/fix.yml": loop, "plant.py": _plant(tools, reveal) + "\n"})
    patch = _MEMO_PER_COMMAND_LINE if control else ""
    second = _run_and_read(repo, tools, patch, "iter-002-agent.log")
    assert second.startswith("turn 2")
    return secret, second


@pytest.mark.parametrize(
    "control", [False, True], ids=["memo per program", "control: memo per command line"]
)
def test_a_planted_interpreter_line_does_not_widen_the_agents_next_turn(
    make_repo: RepoFactory, tmp_path: Path, control: bool
) -> None:
    secret, seen = _agent_attack(make_repo, tmp_path, control=control)
    if control:
        assert secret in seen
    else:
        assert secret not in seen
        assert "probe-tool: not found" in seen
