"""Crash-safe writes: the old file or the new one, never half of one, and no temp files left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outloop_cli.store.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_a_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")

    atomic_write_json(target, {"state": "running", "name": "café"})

    assert json.loads(target.read_text()) == {"state": "running", "name": "café"}
    assert target.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_the_file_is_private_unless_a_mode_is_asked_for(tmp_path: Path) -> None:
    private, shared = tmp_path / "run.json", tmp_path / "junit.xml"

    atomic_write_text(private, "x\n")
    atomic_write_bytes(shared, b"<testsuites/>\n", mode=0o644)

    assert private.stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("durable", [True, False])
def test_missing_directories_are_made(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "a" / "b" / "stop-requested"

    atomic_write_text(target, "now\n", durable=durable)

    assert target.read_text() == "now\n"


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes", durable=True)  # type: ignore[arg-type]

    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
