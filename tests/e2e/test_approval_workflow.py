"""The GitHub Actions template whose approval gate is an environment with required reviewers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

TEMPLATE = Path(__file__).parents[2] / "templates" / "workflows" / "outloop-approval.yml"


def _workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(TEMPLATE.read_text()))


def test_nothing_is_pushed_before_the_environment_approves() -> None:
    jobs = _workflow()["jobs"]
    loop, publish = jobs["loop"], jobs["publish"]
    assert _workflow()["permissions"] == {}
    # the job that runs the agent cannot write to the repository
    assert loop["permissions"] == {"contents": "read"}
    assert "environment" not in loop
    assert publish["needs"] == "loop"
    assert publish["environment"] == "outloop-approval"
    assert publish["permissions"] == {"contents": "write", "pull-requests": "write"}
    pushes = [s for s in loop["steps"] if "git push" in str(s.get("run", ""))]
    assert pushes == []
    assert any("git push" in str(s.get("run", "")) for s in publish["steps"])


def test_every_action_is_pinned_to_a_full_commit() -> None:
    uses = re.findall(r"uses:\s*(\S+)", TEMPLATE.read_text())
    assert len(uses) == 5
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref


def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(zizmor).exists():
        pytest.fail("zizmor is a dev dependency: pip install -e '.[dev]'")
    done = subprocess.run(
        [zizmor, "--offline", "--persona=pedantic", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout + done.stderr
