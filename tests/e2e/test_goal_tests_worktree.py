"""A goal that would test the user's checkout instead of the worktree is refused at the baseline.

Tried as a new user would: a project in src/ layout, its dev venv made with a
real `pip install -e .`, the goal run from that venv. The editable install
points back at the checkout, so the goal would import the checkout's code and
never see the agent's work. The control shows that really happens; the runs
show outloop refusing it (exit 3, the agent never runs, the fix in the hint)
and accepting the same venv once the goal imports the sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from outloop_cli.goals.project_source import goal_interpreters, node_packages, project_packages
from tests.conftest import RepoFactory
from tests.support.e2e import loop_yaml, only_run, run_cli, runs_dir

PROJECT = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "textlib"\nversion = "0.1"\n'
        '[project.scripts]\ntextlib-check = "textlib:main"\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    ),
    "src/textlib/__init__.py": (
        "FIXED = False\n\ndef main():\n    raise SystemExit(0 if FIXED else 1)\n"
    ),
    "tests/test_textlib.py": "import textlib\n\ndef test_fixed():\n    assert textlib.FIXED\n",
    "fix_agent.py": (
        "from pathlib import Path\np = Path('src/textlib/__init__.py')\n"
        "p.write_text(p.read_text().replace('FIXED = False', 'FIXED = True'))\n"
    ),
}

# the agent edits the worktree's copy: fix_agent.py runs with the worktree as cwd
FIX_AGENT = [sys.executable, "fix_agent.py"]


@pytest.fixture
def dev_checkout(make_repo: RepoFactory, tmp_path: Path) -> tuple[Path, Path]:
    """The user's checkout, and its dev venv with the project installed editable."""
    checkout = make_repo(PROJECT, name="textlib")
    venv = tmp_path / "dev-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-e",
            str(checkout),
        ],
        check=True,
        capture_output=True,
    )
    return checkout, venv


def _add_loop(checkout: Path, goal: str) -> None:
    loop = checkout / ".outloop" / "fix.yml"
    loop.parent.mkdir()
    loop.write_text(loop_yaml(FIX_AGENT, goal, sandbox="bwrap", limits={"max_iterations": 2}))
    subprocess.run(["git", "add", "-A"], cwd=checkout, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "loop"], cwd=checkout, check=True)


def test_control_the_editable_install_imports_the_checkout(
    dev_checkout: tuple[Path, Path], tmp_path: Path
) -> None:
    checkout, venv = dev_checkout
    elsewhere = tmp_path / "a-worktree-like-copy"
    elsewhere.mkdir()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import textlib; print(textlib.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()).resolve().is_relative_to(checkout.resolve())


@pytest.mark.parametrize("runner", ["python -m pytest", "console script"])
def test_a_goal_importing_the_checkout_is_refused_at_the_baseline(
    dev_checkout: tuple[Path, Path], runner: str
) -> None:
    checkout, venv = dev_checkout
    if runner == "console script":
        goal = str(venv / "bin" / "textlib-check")
    else:
        goal = f"{venv / 'bin' / 'python'} -c 'import textlib, sys; sys.exit(0 if textlib.FIXED else 1)'"
    _add_loop(checkout, goal)

    done = run_cli(checkout, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert "would test your checkout" in done.stderr
    assert "`textlib`" in done.stderr and str(checkout) in done.stderr
    assert "PYTHONPATH=src" in done.stderr
    record = only_run(checkout)
    assert record["stop_reason"] == "error"
    assert [it["n"] for it in record["iterations"]] == []  # not even the baseline ran
    audit = (runs_dir(checkout) / record["run_id"] / "audit.jsonl").read_text().splitlines()
    assert "goal_tests_checkout" in [json.loads(line)["event"] for line in audit]


def test_the_same_venv_with_the_sources_on_the_path_converges(
    dev_checkout: tuple[Path, Path],
) -> None:
    checkout, venv = dev_checkout
    goal = (
        f"PYTHONPATH=src {venv / 'bin' / 'python'} "
        "-c 'import textlib, sys; sys.exit(0 if textlib.FIXED else 1)'"
    )
    _add_loop(checkout, goal)

    done = run_cli(checkout, "run", "fix")

    assert done.returncode == 0, done.stderr
    assert only_run(checkout)["stop_reason"] == "goal_met"


def test_project_packages_and_interpreters(tmp_path: Path) -> None:
    for rel in ("src/alpha/__init__.py", "beta/__init__.py", "tests/__init__.py", "gamma/x.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert project_packages(tmp_path) == ["beta", "alpha"]

    script = tmp_path / "bin" / "tool"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n")
    script.chmod(0o755)
    found = goal_interpreters(
        f"PYTHONPATH=src {sys.executable} -m pytest && {script} --x # {tmp_path}/bin/tool",
        None,
    )
    assert [(i.mode, i.assignments) for i in found] == [
        ("module", (("PYTHONPATH", "src"),)),
        ("script", ()),
    ]


NODE_PROJECT = {
    "package.json": json.dumps({"name": "widget", "version": "0.1.0", "main": "index.js"}),
    "index.js": "module.exports = { fixed: false };\n",
    "test.js": "process.exit(require('widget').fixed ? 0 : 1);\n",
    "fix_agent.py": (
        "from pathlib import Path\np = Path('index.js')\n"
        "p.write_text(p.read_text().replace('false', 'true'))\n"
    ),
}


@pytest.fixture
def linked_checkout(make_repo: RepoFactory) -> Path:
    """A Node project whose checkout is `npm link`ed: node_modules/widget leads back to it."""
    checkout = make_repo(NODE_PROJECT, name="widget")
    link = checkout / "node_modules" / "widget"
    link.parent.mkdir()
    link.symlink_to(checkout, target_is_directory=True)
    (checkout / ".git" / "info" / "exclude").write_text("node_modules/\n")
    return checkout


def test_control_a_node_modules_link_above_the_worktree_resolves_the_checkout(
    linked_checkout: Path,
) -> None:
    # a stray ~/node_modules is above every worktree under $HOME
    home = Path(os.environ["HOME"])
    (home / "node_modules").symlink_to(linked_checkout / "node_modules")
    somewhere = home / ".local" / "state" / "outloop" / "worktrees" / "x"
    somewhere.mkdir(parents=True)
    (somewhere / "test.js").write_text(NODE_PROJECT["test.js"])
    done = subprocess.run(
        ["node", "-e", "console.log(require.resolve('widget'))"],
        cwd=somewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()).is_relative_to(linked_checkout.resolve())


@pytest.mark.parametrize("how", ["node_modules above the worktree", "NODE_PATH"])
def test_a_node_goal_resolving_the_checkout_is_refused_at_the_baseline(
    linked_checkout: Path, how: str
) -> None:
    checkout = linked_checkout
    if how == "NODE_PATH":
        goal = f"NODE_PATH={checkout / 'node_modules'} node test.js"
    else:
        (Path(os.environ["HOME"]) / "node_modules").symlink_to(checkout / "node_modules")
        goal = "node test.js"
    _add_loop(checkout, goal)

    done = run_cli(checkout, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert "would test your checkout" in done.stderr
    assert "`widget`" in done.stderr and "node_modules" in done.stderr
    assert "npm ci && npm test" in done.stderr
    record = only_run(checkout)
    assert [it["n"] for it in record["iterations"]] == []
    audit = (runs_dir(checkout) / record["run_id"] / "audit.jsonl").read_text().splitlines()
    assert "goal_tests_checkout" in [json.loads(line)["event"] for line in audit]


def test_a_node_goal_that_resolves_the_worktree_runs(linked_checkout: Path) -> None:
    # the package resolves itself by name from its own directory: the worktree's copy
    checkout = linked_checkout
    _add_loop(checkout, "node -e \"process.exit(require('./index.js').fixed ? 0 : 1)\"")

    done = run_cli(checkout, "run", "fix")

    assert done.returncode == 0, done.stderr
    assert only_run(checkout)["stop_reason"] == "goal_met"


def test_node_packages_and_runtimes(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(
        json.dumps({"name": "@acme/root", "workspaces": ["packages/*", "../escape", 3]})
    )
    for name, package in (("a", "@acme/a"), ("b", "Not A Name")):
        (tmp_path / "packages" / name).mkdir(parents=True)
        (tmp_path / "packages" / name / "package.json").write_text(json.dumps({"name": package}))
    assert node_packages(tmp_path) == ["@acme/root", "@acme/a"]

    tool = tmp_path / "bin" / "jest"
    tool.parent.mkdir()
    tool.write_text("#!/usr/bin/env node\n")
    tool.chmod(0o755)
    found = goal_interpreters(f"NODE_PATH=x {tool} && node t.js && npm test", None)
    assert [(i.mode, i.named_as, i.assignments) for i in found][:2] == [
        ("node", str(tool), (("NODE_PATH", "x"),)),
        ("node", "node", ()),
    ]
