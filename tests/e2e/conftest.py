"""What the whole-run tests share: a directory outside every repository, and runners to reap."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside every git repository, as a user's home or /tmp would be."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    """Runners a test started in the background: killed, if still there, and reaped after it."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
