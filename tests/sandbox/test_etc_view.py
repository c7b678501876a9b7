"""The run's copy of /etc shows the sandbox exactly what one bind per entry showed (real bwrap)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from outloop_cli.sandbox.bwrap import ETC_ENTRIES, GitMounts, etc_view, wrap

# every entry of /etc inside, with its type, link target and, for a file, its content's hash
_LIST_ETC = (
    "cd /etc && find . -printf '%y %p %l\\n' | sort && find . -type f -exec md5sum {} + | sort -k2"
)


def _inside(args: list[str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args[: args.index("--") + 1], "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _view(tmp_path: Path, etc: Path | None) -> list[str]:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None, "bubblewrap is part of the test machine (.ci/run installs it)"
    worktree = tmp_path / "wt"
    worktree.mkdir(exist_ok=True)
    return wrap(["true"], bwrap=bwrap, worktree=worktree, git=GitMounts((), None), etc=etc)


def test_the_copied_etc_shows_the_same_entries_and_contents_with_fewer_mounts(
    tmp_path: Path,
) -> None:
    per_entry = _view(tmp_path, None)
    copied = _view(tmp_path, etc_view(tmp_path / "run" / "sandbox-etc"))

    before, after = _inside(per_entry, _LIST_ETC), _inside(copied, _LIST_ETC)

    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    assert "./passwd" in after.stdout
    assert copied.count("--ro-bind") < per_entry.count("--ro-bind")


def test_nothing_outside_the_allow_list_is_copied_and_the_copy_is_read_only(
    tmp_path: Path,
) -> None:
    view = etc_view(tmp_path / "sandbox-etc")
    top = {entry.split("/")[0] for entry in ETC_ENTRIES}
    assert {p.name for p in view.iterdir()} <= top
    assert not (view / "shadow").exists()

    done = _inside(
        _view(tmp_path, view),
        "cat /etc/shadow; echo planted > /etc/passwd; echo exit=$?; ls /etc/ssh",
    )

    assert "planted" not in (view / "passwd").read_text()
    assert "exit=0" not in done.stdout
    assert "No such file" in done.stderr


def test_a_second_view_replaces_the_first(tmp_path: Path) -> None:
    dest = tmp_path / "sandbox-etc"
    etc_view(dest)
    (dest / "stale").write_text("left from an earlier process of the run\n")

    etc_view(dest)

    assert not (dest / "stale").exists()
    assert (dest / "passwd").read_bytes() == Path("/etc/passwd").read_bytes()
