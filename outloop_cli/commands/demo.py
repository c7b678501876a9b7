"""``outloop demo``: a throwaway repository with failing tests and a scripted agent."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.errors import UsageError
from outloop_cli.git.repo import Repository, create_repository, discover
from outloop_cli.templates_dir import demo_project_dir, render_demo_loop

if TYPE_CHECKING:
    from outloop_cli.agency.demo import AgencyDemo

DEMO_IDENTITY = {
    "GIT_AUTHOR_NAME": "outloop demo",
    "GIT_AUTHOR_EMAIL": "demo@outloop.invalid",
    "GIT_COMMITTER_NAME": "outloop demo",
    "GIT_COMMITTER_EMAIL": "demo@outloop.invalid",
}


def prepare_demo(target: Path | None = None) -> Path:
    """Copy the demo project into ``target`` (or a new temp dir) and commit it with its loop."""
    if target is None:
        target = Path(tempfile.mkdtemp(prefix="outloop-demo-")) / "textstats"
    elif target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty", hint="give --dir a new or empty directory")
    shutil.copytree(demo_project_dir(), target, dirs_exist_ok=True)
    loop_file = target / ".outloop" / "fix-tests.yml"
    loop_file.parent.mkdir(parents=True, exist_ok=True)
    loop_file.write_text(render_demo_loop(sys.executable), encoding="utf-8")
    create_repository(
        target, message="textstats: a small library with three bugs", identity=DEMO_IDENTITY
    )
    return target


def run_agency_demo(
    target: Path | None, *, secrets_mode: str, ui: bool, step: Callable[[str], None]
) -> AgencyDemo:
    """``outloop demo --agency``: see :mod:`outloop_cli.agency.demo`."""
    from outloop_cli.agency.demo import run_agency_demo as run

    return run(target, secrets_mode=secrets_mode, ui=ui, step=step)


def demo_log(repo: Path, branch: str, base: str) -> str:
    return Repository(discover(repo)).log_summary(base, branch) or "(no commits)"
