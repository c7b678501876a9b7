"""A reused work tree must look like a fresh checkout: ``find`` and the Python walk agree.

``unlike_fresh_checkout`` asks ``find`` (one ``lstat`` per entry, in C) for the
first odd entry and words it with the same judgement the Python walk makes;
the walk decides wherever ``find`` cannot answer. Each case here is checked
both ways, on a real tree: what a fresh checkout has passes, and each thing
an agent could leave behind (a hard link out, a mode the umask would not
give, a FIFO, a set-uid bit) is named, with the same words.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from outloop_cli.errors import CouldNotRun
from outloop_cli.git import reuse
from outloop_cli.process.proc import umask

ODD_NAME = "-odd name\nwith a line break"


def _checkout(root: Path) -> Path:
    """A tree as git checks it out under this umask, with a `.git` file as a run's has."""
    mask = umask()
    assert mask is not None
    (root / "src" / "deep").mkdir(parents=True)
    (root / "README.md").write_text("readme\n")
    (root / "src" / "deep" / "mod.py").write_text("x = 1\n")
    (root / "src" / "tool.sh").write_text("#!/bin/sh\n")
    (root / "src" / "tool.sh").chmod(0o777 & ~mask)
    (root / "src" / "link").symlink_to("deep/mod.py")
    (root / ".git").write_text("gitdir: /somewhere/else\n")
    return root


def _hard_link(root: Path) -> tuple[Path, str]:
    outside = root.parent / "outside.txt"
    outside.write_text("outside\n")
    target = root / "src" / "deep" / ODD_NAME
    os.link(outside, target)
    return target, "has 2 hard links"


def _private_file(root: Path) -> tuple[Path, str]:
    target = root / "src" / ODD_NAME
    target.write_text("secret\n")
    target.chmod(0o600)
    return target, "has mode 600"


def _setuid(root: Path) -> tuple[Path, str]:
    target = root / "src" / "tool.sh"
    target.chmod(0o4755)
    return target, "has mode 4755"


def _private_dir(root: Path) -> tuple[Path, str]:
    target = root / "src" / "deep"
    target.chmod(0o700)
    return target, "has mode 700"


def _fifo(root: Path) -> tuple[Path, str]:
    target = root / "src" / "pipe"
    os.mkfifo(target)
    return target, "is neither a file, a directory nor a link"


SPOILERS: list[Callable[[Path], tuple[Path, str]]] = [
    _hard_link,
    _private_file,
    _setuid,
    _private_dir,
    _fifo,
]


@pytest.fixture(params=["find", "walk"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        # find cannot be started: the Python walk alone decides
        def no_find(*_args: object, **_kwargs: object) -> None:
            raise CouldNotRun("find is not installed")

        monkeypatch.setattr(reuse, "run_captured", no_find)
    return str(request.param)


def test_a_fresh_checkout_passes(tmp_path: Path, way: str) -> None:
    root = _checkout(tmp_path / "wt")

    assert reuse.unlike_fresh_checkout(root) is None


@pytest.mark.parametrize("spoil", SPOILERS, ids=lambda f: f.__name__.strip("_"))
def test_what_an_agent_could_leave_is_named_the_same_way_by_both(
    tmp_path: Path, way: str, spoil: Callable[[Path], tuple[Path, str]]
) -> None:
    root = _checkout(tmp_path / "wt")
    target, why = spoil(root)

    assert reuse.unlike_fresh_checkout(root) == f"{target} {why}"


@pytest.mark.parametrize("spoil", SPOILERS, ids=lambda f: f.__name__.strip("_"))
def test_find_itself_names_the_odd_entry(
    tmp_path: Path, spoil: Callable[[Path], tuple[Path, str]]
) -> None:
    # the fast path answers on its own (it does not fall back to the walk every time)
    root = _checkout(tmp_path / "wt")
    mask = umask()
    assert mask is not None
    modes = {0o666 & ~mask, 0o777 & ~mask}
    assert reuse._first_odd_by_find(root, os.geteuid(), modes, 0o777 & ~mask) is None
    target, _why = spoil(root)

    assert reuse._first_odd_by_find(root, os.geteuid(), modes, 0o777 & ~mask) == target


def test_an_entry_of_another_user_is_found(tmp_path: Path) -> None:
    # owned by another uid is asked for as "not ours": the same test of every entry,
    # seen from a user who owns none of them (chown would need root)
    root = _checkout(tmp_path / "wt")
    mask = umask()
    assert mask is not None
    modes = {0o666 & ~mask, 0o777 & ~mask}

    found = reuse._first_odd_by_find(root, os.geteuid() + 1, modes, 0o777 & ~mask)

    assert isinstance(found, Path)
    assert found.parent == root or root in found.parents
    assert found.name != ".git"


def test_the_run_s_git_file_at_the_top_is_not_judged_but_one_deeper_is(tmp_path: Path) -> None:
    root = _checkout(tmp_path / "wt")
    (root / ".git").chmod(0o600)
    assert reuse.unlike_fresh_checkout(root) is None

    nested = root / "src" / ".git"
    nested.write_text("gitdir: /elsewhere\n")
    nested.chmod(0o600)

    assert reuse.unlike_fresh_checkout(root) == f"{nested} has mode 600"


def test_an_unreadable_directory_is_named_by_the_walk(tmp_path: Path) -> None:
    root = _checkout(tmp_path / "wt")
    locked = root / "src" / "deep"
    locked.chmod(0)
    try:
        reason = reuse.unlike_fresh_checkout(root)
    finally:
        locked.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)

    # as root the directory is still readable, and then its mode is what is wrong
    assert reason in (f"{locked} has mode 0", f"{locked} cannot be read (Permission denied)")


def test_a_umask_that_gives_files_one_mode_whatever_their_x_bit(tmp_path: Path) -> None:
    # umask 177: 666 and 777 both become 600, so a fresh checkout has one file mode
    root = tmp_path / "wt"
    (root / "src").mkdir(parents=True)
    (root / "src").chmod(0o600 | 0o100)
    (root / "a.txt").write_text("a\n")
    (root / "a.txt").chmod(0o600)
    root.chmod(0o700)

    assert reuse._first_odd_by_find(root, os.geteuid(), {0o600}, 0o700) is None
    (root / "a.txt").chmod(0o640)
    assert reuse._first_odd_by_find(root, os.geteuid(), {0o600}, 0o700) == root / "a.txt"
