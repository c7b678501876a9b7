"""``spawn._which`` gives ``shutil.which``'s answer for every kind of PATH entry."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from outloop_cli.process.spawn import _which


def _tool(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


@pytest.fixture
def path_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dirs = {name: tmp_path / name for name in ("exe", "plain", "dir", "links", "later")}
    _tool(dirs["exe"] / "tool")
    _tool(dirs["plain"] / "tool", 0o644)
    (dirs["dir"] / "tool").mkdir(parents=True)
    dirs["links"].mkdir()
    (dirs["links"] / "tool").symlink_to(dirs["exe"] / "tool")
    (dirs["links"] / "dangling").symlink_to(tmp_path / "nowhere")
    _tool(dirs["later"] / "tool")
    _tool(dirs["later"] / "dangling")
    _tool(tmp_path / "cwd-tool")
    monkeypatch.chdir(tmp_path)
    return dirs


@pytest.mark.parametrize(
    "order",
    [
        ["exe"],
        ["plain", "exe"],
        ["dir", "later"],
        ["links", "later"],
        ["plain", "dir"],
        ["later", "later", "exe"],
        ["", "exe"],
        [],
    ],
)
@pytest.mark.parametrize("program", ["tool", "dangling", "cwd-tool", "missing"])
def test_which_answers_as_shutil_does(
    path_dirs: dict[str, Path], order: list[str], program: str
) -> None:
    search_path = os.pathsep.join(str(path_dirs[name]) if name else "" for name in order)
    assert _which(program, search_path) == shutil.which(program, path=search_path)
    # and the answers differ across the grid, so the comparison means something
    if order == ["plain", "exe"] and program == "tool":
        assert _which(program, search_path) == str(path_dirs["exe"] / "tool")
    if order == ["", "exe"] and program == "cwd-tool":
        assert _which(program, search_path) == "cwd-tool"


def test_a_program_found_on_a_relative_path_entry_runs_from_where_it_was_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PATH=bin:... is looked up in outloop's own directory; exec after the child's chdir
    # would read the same words in the worktree, where an agent could have put a `tool`
    from outloop_cli.process.spawn import run_captured

    here, worktree = tmp_path / "here", tmp_path / "worktree"
    for root, said in ((here, "found"), (worktree, "planted")):
        tool = _tool(root / "bin" / "tool")
        tool.write_text(f"#!/bin/sh\necho {said}\n")
    monkeypatch.chdir(here)

    done = run_captured(["tool"], cwd=worktree, env={"PATH": "bin"})

    assert done.stdout.decode().strip() == "found"
