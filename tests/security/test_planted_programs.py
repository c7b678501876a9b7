"""A loop's writable path must not hold a program outloop itself runs outside the sandbox.

The agent may write what the loop declares (``sandbox: {write: [...]}``). outloop
finds its own git and bubblewrap on the user's PATH before every call, outside any
sandbox: a declared directory on that PATH (``~/.local/bin``, an npm prefix's
``bin``) would let the agent plant a ``git`` or a ``bwrap`` there, and the next
call would run the agent's code as the user, keys, keyring and all. Each attack is a
real ``outloop run`` whose agent plants the program; its control takes the fence out
of the same run and shows the planted program running outside the sandbox.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import RepoFactory
from tests.support.e2e import (
    agent_cmd,
    counter_goal,
    loop_yaml,
    run_cli,
    run_cli_patched,
    runs_dir,
)

# the fence taken out of a real run: every writable path is let through as before
_WITHOUT_THE_FENCE = (
    "import outloop_cli.sandbox.extra_paths as paths\npaths.outside_program_fences = lambda: []\n"
)


def _setup(
    make_repo: RepoFactory, tmp_path: Path, program: str
) -> tuple[Path, Path, dict[str, str], Path]:
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = outside / "ran-outside.log"
    real = shutil.which(program)
    assert real is not None, program
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd(
                    "program_planter_agent.py", str(tools / "bin"), program, real, str(marker)
                ),
                counter_goal(1),
                sandbox={"mode": "bwrap", "write": [str(tools)]},
            )
        }
    )
    # the tools' bin first on PATH, as `npm config set prefix ~/.npm-global` asks
    env = {"PATH": f"{tools / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return repo, marker, env, tools


@pytest.mark.parametrize("program", ["git", "bwrap"])
def test_a_writable_path_on_outloops_path_is_refused_before_anything_runs(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str
) -> None:
    repo, marker, env, tools = _setup(make_repo, tmp_path, program)
    monkeypatch.setenv("PATH", env["PATH"])

    done = run_cli(repo, "run", "fix", "--max-iterations", "2")

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert ".outloop/fix.yml" in done.stderr and "sandbox.write[0]" in done.stderr
    assert f"{tools / 'bin'}" in done.stderr and "outside the sandbox" in done.stderr
    assert "hint:" in done.stderr
    assert not runs_dir(repo).exists(), "a refused loop must leave nothing behind"
    assert not marker.exists()
    assert not (tools / "bin" / program).exists()


@pytest.mark.parametrize("program", ["git", "bwrap"])
def test_control_without_the_fence_the_planted_program_runs_outside_the_sandbox(
    make_repo: RepoFactory, tmp_path: Path, program: str
) -> None:
    repo, marker, env, tools = _setup(make_repo, tmp_path, program)

    # a run keeps the bubblewrap it found before its first sandbox, so a planted `bwrap`
    # waits for the next run; a planted `git` runs on the same run's next git command
    for _ in range(1 if program == "git" else 2):
        done = run_cli_patched(
            repo, _WITHOUT_THE_FENCE, "run", "fix", "--max-iterations", "1", env=env
        )
        # the planted program passed everything on: the run itself went on as usual
        assert done.returncode in (0, 1), done.stderr
    assert (tools / "bin" / program).exists()
    assert marker.read_text().startswith(f"{program} planted by the agent ran outside")


def test_only_what_outloops_searches_reach_is_fenced(tmp_path: Path) -> None:
    # below a PATH directory no search of outloop's looks; right below a sys.path entry
    # a directory is a package (`<entry>/shutil/`), one level deeper it is not
    from outloop_cli.config.model import SandboxConfig, SandboxPath
    from outloop_cli.errors import ConfigError
    from outloop_cli.sandbox.extra_paths import Unwritable, check_extra_paths

    bin_dir, site = tmp_path / "prefix" / "bin", tmp_path / "site"
    for directory in (bin_dir / "sub", site / "pkg" / "deeper"):
        directory.mkdir(parents=True)
    fences = [Unwritable(bin_dir, "a directory on PATH"), Unwritable(site, "sys.path", True)]

    def refused(path: Path) -> bool:
        config = SandboxConfig(write=(SandboxPath(str(path), 3),))
        try:
            check_extra_paths(
                config, file="fix.yml", home=tmp_path, keep_out=[], keep_unwritable=fences
            )
        except ConfigError:
            return True
        return False

    assert {
        path.relative_to(tmp_path).as_posix(): refused(path)
        for path in (
            bin_dir,
            bin_dir.parent,
            bin_dir / "sub",
            site,
            site / "pkg",
            site / "pkg" / "deeper",
        )
    } == {
        "prefix/bin": True,
        "prefix": True,
        "prefix/bin/sub": False,
        "site": True,
        "site/pkg": True,
        "site/pkg/deeper": False,
    }
