"""The run's memo of the real paths its sandboxes bind: the same answers as ``resolve``,
taken again only while the file system still holds them."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from outloop_cli.engine import containment
from outloop_cli.sandbox.bwrap import RealPaths


def test_answers_are_those_of_resolve(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "file").write_text("x")
    (tmp_path / "link").symlink_to(real_dir)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    paths = [
        real_dir,
        tmp_path / "link",
        tmp_path / "link" / "file",
        tmp_path / "missing",
        tmp_path / "loop",
        Path("/"),
    ]
    memo = RealPaths()
    for _ in range(2):  # found, then from the memo
        assert memo.existing(paths) == [p.resolve() for p in paths if p.exists()]
        assert memo.dirs(paths) == [real_dir]
        assert memo.files(paths) == [real_dir / "file"]
        assert [memo.path(p) for p in paths[:4]] == [p.resolve() for p in paths[:4]]


def test_a_path_that_changed_is_resolved_again(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    link = tmp_path / "link"
    link.symlink_to(first)
    memo = RealPaths()
    assert memo.dirs([link]) == [first]
    # the real path itself becomes a link: the memo does not bind through it
    first.rmdir()
    first.symlink_to(second)
    assert memo.dirs([link]) == [second]
    # gone altogether
    first.unlink()
    second.rmdir()
    assert memo.dirs([link]) == [] and memo.existing([link]) == []
    # a directory where a file was is not a file
    second.mkdir()
    target = second / "thing"
    target.write_text("x")
    link.unlink()
    link.symlink_to(target)
    assert memo.files([link]) == [target]
    target.unlink()
    target.mkdir()
    assert memo.files([link]) == [] and memo.dirs([link]) == [target]


def test_a_relative_path_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        (tmp_path / name / "here").mkdir(parents=True)
    memo = RealPaths()
    monkeypatch.chdir(tmp_path / "a")
    assert memo.dirs([Path("here")]) == [tmp_path / "a" / "here"]
    monkeypatch.chdir(tmp_path / "b")
    assert memo.dirs([Path("here")]) == [tmp_path / "b" / "here"]


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_run_keeps_the_bubblewrap_it_found_while_it_is_there(tmp_path: Path) -> None:
    """A ``bwrap`` that shows up on PATH later is not taken mid-run; a vanished one is found anew."""
    early, late = tmp_path / "early", tmp_path / "late"
    found = _executable(late / "bwrap")
    path_env = os.pathsep.join([str(early), str(late)])
    ctx = cast(Any, SimpleNamespace(paths=SimpleNamespace(root=tmp_path / "run")))
    assert containment.bwrap_program(ctx, path_env) == str(found)
    planted = _executable(early / "bwrap")
    assert containment.bwrap_program(ctx, path_env) == str(found)
    found.unlink()
    assert containment.bwrap_program(ctx, path_env) == str(planted)
    # another run looks for itself
    other = cast(Any, SimpleNamespace(paths=SimpleNamespace(root=tmp_path / "other")))
    _executable(late / "bwrap")
    assert containment.bwrap_program(other, path_env) == str(planted)


def test_a_link_on_the_way_pointed_elsewhere_is_resolved_again(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for directory in (one, two):
        (directory / "sub").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(one)
    memo = RealPaths()
    assert memo.dirs([link / "sub"]) == [one / "sub"]
    # both real paths still exist: only following the link again tells them apart
    link.unlink()
    link.symlink_to(two)
    assert memo.dirs([link / "sub"]) == [two / "sub"]
    assert memo.existing([link]) == [two]


def test_a_finished_run_leaves_no_memo_behind(tmp_path: Path) -> None:
    found = _executable(tmp_path / "bin" / "bwrap")
    ctx = cast(Any, SimpleNamespace(paths=SimpleNamespace(root=tmp_path / "run")))
    assert containment.bwrap_program(ctx, str(found.parent)) == str(found)
    containment.real_paths(ctx)
    assert any(key[0] == ctx.paths.root for key in containment._PER_RUN)
    containment.forget_run(ctx)
    assert not any(key[0] == ctx.paths.root for key in containment._PER_RUN)
