"""A loop from `outloop init`, edited as a user would, runs and converges in the default sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tests.conftest import RepoFactory, git
from tests.support.e2e import only_run, run_cli

FIXER = """\
import pathlib
pathlib.Path("calc.py").write_text("def add(a, b):\\n    return a + b\\n")
"""


def test_an_init_template_runs_under_the_default_sandbox(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = make_repo(
        {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        }
    )
    assert run_cli(repo, "init", "--name", "fix").returncode == 0
    loop_file = repo / ".outloop" / "fix.yml"
    data = yaml.safe_load(loop_file.read_text())
    assert data["sandbox"] == "auto"
    # what a user changes: their agent, and the goal's interpreter (pytest from this venv);
    # the rest, the sandbox line included, stays as the template wrote it
    fixer = tmp_path / "fixer.py"
    fixer.write_text(FIXER)
    data["agent"]["command"] = [sys.executable, str(fixer)]
    data["goal"]["run"] = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    loop_file.write_text(yaml.safe_dump(data, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "loop")

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met"
    assert record["sandbox"] == {"requested": "auto", "active": True, "warning": None}
