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


def _copies(directory: Path, dest: Path) -> bool:
    try:
        shutil.copytree(directory, dest, symlinks=True)
    except (OSError, shutil.Error):
        return False
    return True


def test_a_directory_is_judged_copyable_only_when_its_copy_works(tmp_path: Path) -> None:
    # as a normal user a locked subdirectory cannot be copied (os.walk skipped it without a
    # word, and the copy of /etc then failed); as root it can: either way the verdict holds
    from outloop_cli.sandbox.bwrap import _small_and_readable

    for name, locked in (("top", "."), ("inner", "sub")):
        directory = tmp_path / name
        (directory / "sub").mkdir(parents=True)
        (directory / "sub" / "a.conf").write_text("a\n")
        (directory / "b.conf").write_text("b\n")
        (directory / locked).chmod(0)
        try:
            verdict = _small_and_readable(directory)
            works = _copies(directory, tmp_path / f"{name}-copy")
        finally:
            (directory / locked).chmod(0o755)
        assert verdict == works, name
    assert _small_and_readable(tmp_path / "inner")


def test_a_home_under_etc_is_still_empty_and_writable(tmp_path: Path) -> None:
    # a directory of bubblewrap's root hides nothing mounted there already: a $HOME inside
    # the view's /etc must still get a tmpfs of its own
    home = next(Path("/etc", e) for e in ETC_ENTRIES if Path("/etc", e).is_dir())
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    worktree = tmp_path / "wt"
    worktree.mkdir()
    etc = etc_view(tmp_path / "sandbox-etc")
    args = wrap(["true"], bwrap=bwrap, worktree=worktree, git=GitMounts((), None), etc=etc,
                home=home)  # fmt: skip

    done = _inside(args, f"ls -A {home}; touch {home}/mine && echo wrote")

    assert done.stdout == "wrote\n", done.stderr
