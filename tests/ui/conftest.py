"""Fixtures for the dashboard's tests: repositories with real runs, a gate to pace them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory
from tests.support.dashboard import dashboard_files, wait_until
from tests.support.e2e import run_cli, runs_dir, start_runner


@dataclass
class LiveRun:
    """A run whose agent waits at the end of each turn until the test releases it."""

    repo: Path
    gate: Path
    runner: subprocess.Popen[str]

    @property
    def run_dir(self) -> Path:
        dirs = wait_until(lambda: sorted(runs_dir(self.repo).glob("*/run.json")), what="run.json")
        return Path(dirs[-1]).parent

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def record(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir / "run.json").read_text()))

    def wait_turn(self, n: int) -> None:
        wait_until(lambda: (self.gate / f"waiting-{n}").exists(), what=f"turn {n} to start")

    def release(self, n: int) -> None:
        (self.gate / f"release-{n}").write_text("")

    def release_all(self) -> None:
        for n in range(1, 30):
            self.release(n)


@pytest.fixture
def finished_repo(make_repo: RepoFactory) -> Path:
    """A repository with one finished run of three iterations (goal met)."""
    repo = make_repo(dashboard_files(None))
    run_cli(repo, "run", "fix", check=True)
    return repo


@pytest.fixture
def live_run(make_repo: RepoFactory, tmp_path: Path) -> Iterator[LiveRun]:
    gate = tmp_path / "gate"
    gate.mkdir()
    repo = make_repo(dashboard_files(gate, goal_target=3), name="live")
    runner = start_runner(repo, "run", "fix")
    live = LiveRun(repo, gate, runner)
    try:
        yield live
    finally:
        live.release_all()
        if runner.poll() is None:
            runner.send_signal(2)
            try:
                runner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait()
