"""The bubblewrap command line: what each run's view shows and hides (no process started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outloop_cli.sandbox.bwrap import GitMounts, wrap


def _bound(args: list[str]) -> set[str]:
    return {args[i + 1] for i, arg in enumerate(args[:-1]) if arg in ("--bind", "--ro-bind")}


def _tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return tool


def test_a_program_straight_in_home_bin_does_not_bring_home_back(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    tool = _tool(home / "bin", "check")
    args = wrap(
        ["/bin/sh", "-c", f"{tool} --fast"],
        bwrap="bwrap",
        worktree=tmp_path,
        git=GitMounts((), tmp_path),
        protected=[home],
        shell_command=f"{tool} --fast",
    )
    assert str(home / "bin") in _bound(args)
    assert str(home) not in _bound(args)


def test_programs_named_in_a_goal_script_stay_visible(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    venv_python = _tool(home / "venv" / "bin", "python")
    other = _tool(home / "opt" / "lint" / "bin", "lint")
    script = f"FOO=1 {venv_python} -m pytest -q && {other} . # {home / 'secret'}"
    args = wrap(
        ["/bin/sh", "-c", script],
        bwrap="bwrap",
        worktree=tmp_path,
        git=GitMounts((), tmp_path),
        protected=[home],
        shell_command=script,
    )
    bound = _bound(args)
    assert str(home / "venv") in bound
    assert str(home / "opt" / "lint") in bound
    # a comment names no program, and nothing shows the rest of $HOME
    assert str(home) not in bound
    assert not any(b.startswith(str(home / "secret")) for b in bound)


def test_an_unparsable_script_still_gives_a_sandbox(tmp_path: Path) -> None:
    args = wrap(
        ["/bin/sh", "-c", "echo 'unterminated"],
        bwrap="bwrap",
        worktree=tmp_path,
        git=GitMounts((), tmp_path),
        shell_command="echo 'unterminated",
    )
    assert args[0] == "bwrap"
    assert args[-3:] == ["/bin/sh", "-c", "echo 'unterminated"]


def test_the_view_is_an_allow_list_not_the_root(tmp_path: Path) -> None:
    args = wrap(["/bin/true"], bwrap="bwrap", worktree=tmp_path, git=GitMounts((), tmp_path))
    bound = _bound(args)
    assert "/" not in bound
    assert not {"/home", "/root", "/srv", "/opt", "/var", "/mnt", "/media", "/etc"} & bound
    # of /etc only named entries, never a secret
    etc = {b for b in bound if b.startswith("/etc/")}
    assert etc and not {"/etc/shadow", "/etc/ssh", "/etc/ssl/private", "/etc/gitconfig"} & etc
    # the kernel knobs in /proc are read-only, /proc/keys is empty
    at = args.index("/proc/sys")
    assert args[at - 1 : at + 2] == ["--ro-bind-try", "/proc/sys", "/proc/sys"]
    assert str(tmp_path) in bound


def test_a_script_beside_the_repository_brings_itself_not_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    script = tmp_path / "agent.py"
    script.write_text("print('hi')\n")
    args = wrap(
        ["python3", str(script)],
        bwrap="bwrap",
        worktree=tmp_path / "wt",
        git=GitMounts((), repo / ".git"),
        protected=[repo],
    )
    bound = _bound(args)
    # its directory would show the repository: the file alone comes into view
    assert str(script) in bound
    assert str(tmp_path) not in bound


def test_a_wrapper_script_brings_the_program_it_execs(tmp_path: Path) -> None:
    # a preset's `sh -c 'exec "$0" "$@" …' codex …`: codex is $0, not the argv's program
    home = Path(os.environ["HOME"])
    tool = _tool(home / "tools" / "codex" / "bin", "codex")
    args = wrap(
        ["sh", "-c", 'exec "$0" "$@"', "codex", "exec"],
        bwrap="bwrap",
        worktree=tmp_path,
        git=GitMounts((), tmp_path),
        path_env=f"{tool.parent}:/usr/bin:/bin",
        protected=[home],
    )
    assert str(home / "tools" / "codex") in _bound(args)


def test_the_string_containment_check_agrees_with_pathlib() -> None:
    from itertools import product

    from outloop_cli.sandbox.bwrap import _contains

    # absolute paths as callers give them (POSIX's implementation-defined "//" root aside)
    paths = [
        Path(p)
        for p in (
            "/",
            "/home",
            "/home/",
            "/home/user",
            "/home/user2",
            "/home/user/.local/state",
            "/home/username",
            "/usr",
            "/usr/lib",
            "/a/../b",
            "/a/..",
            "/a",
        )
    ]
    for outer, inner in product(paths, repeat=2):
        assert _contains(outer, inner) == (inner == outer or outer in inner.parents), (
            outer,
            inner,
        )


def test_a_declared_path_above_the_handoff_sockets_directory_does_not_show_it(
    tmp_path: Path,
) -> None:
    """A loop's declared path (or a program's root) can hold the directory the broker keeps
    its handoff sockets in; that directory is covered again, empty, after every bind."""
    from outloop_cli.sandbox.ports import SandboxPort

    runtime = tmp_path / "runtime"
    handoffs = runtime / "outloop-h-1"
    handoffs.mkdir(parents=True)
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    args = wrap(
        ["/bin/true"],
        bwrap="bwrap",
        worktree=worktree,
        git=GitMounts((), worktree),
        extra_read=[(runtime, Path("/shown"))],
        relays=[SandboxPort(4000, tmp_path / "proxy.sock", handoffs / "abc")],
    )
    declared = args.index("/shown")
    mask = args.index("/shown/outloop-h-1")
    assert args[mask - 1] == "--tmpfs" and mask > declared
    assert args[mask + 1] == "--chdir"
    # the socket itself is still bound in, where the relay looks for it
    assert args[args.index(str(handoffs / "abc")) - 1] == "--bind-try"


def test_hiding_names_every_place_a_bind_shows_the_directory() -> None:
    from outloop_cli.sandbox.bwrap import hide

    args = [
        "bwrap",
        "--unshare-user",
        "--ro-bind",
        "/run/user/7",
        "/run/user/7",
        "--bind-try",
        "/run/user",
        "/elsewhere",
        "--bind",
        "/run/user/7/outloop-h-1/sock",
        "/run/outloop-handoff-0.sock",
        "--",
        "--bind",
        "/run",
        "/x",
    ]
    assert hide(args, [Path("/run/user/7/outloop-h-1")]) == [
        "--tmpfs",
        "/run/user/7/outloop-h-1",
        "--tmpfs",
        "/elsewhere/7/outloop-h-1",
    ]


def test_hiding_refuses_an_option_it_does_not_know() -> None:
    import pytest

    from outloop_cli.sandbox.bwrap import hide

    with pytest.raises(ValueError, match="--overlay-src"):
        hide(["bwrap", "--overlay-src", "/a", "--", "true"], [Path("/a/b")])


def test_a_bind_through_a_link_is_hidden_where_the_link_shows_it(tmp_path: Path) -> None:
    """A program's root given through a link (``srv/rtlink -> rt``): the kernel follows the
    link, so the handoff directory under ``rt`` is covered under the link's place too."""
    from outloop_cli.sandbox.ports import SandboxPort

    runtime = tmp_path / "rt"
    handoffs = runtime / "outloop-h-1"
    handoffs.mkdir(parents=True)
    (tmp_path / "srv").mkdir()
    link = tmp_path / "srv" / "rtlink"
    link.symlink_to(runtime)
    (runtime / "run.sh").write_text("true\n")
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    args = wrap(
        ["/bin/sh", str(link / "run.sh")],
        bwrap="bwrap",
        worktree=worktree,
        git=GitMounts((), worktree),
        relays=[SandboxPort(4000, tmp_path / "proxy.sock", handoffs / "abc")],
    )
    # the root reached through the link is bound from its real path, at the link's place
    binds = {(args[i + 1], args[i + 2]) for i, a in enumerate(args[:-2]) if a == "--ro-bind"}
    assert {(str(runtime), str(link)), (str(runtime), str(runtime))} <= binds
    masks = {args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"}
    assert {str(handoffs), str(link / "outloop-h-1")} <= masks


def test_every_view_hides_this_users_handoff_directory_relays_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A goal's view has no relay of its own; other starts' and other runs' sockets are in
    the one directory all the same."""
    import tempfile

    from outloop_cli.sandbox.ports import handoff_home

    runtime = Path(tempfile.mkdtemp(prefix="ol-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # not there yet: the view makes it, or a run started later would make it under a bind
    # of this view, unhidden
    home = handoff_home()
    assert not home.exists()
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    try:
        args = wrap(
            ["/bin/true"],
            bwrap="bwrap",
            worktree=worktree,
            git=GitMounts((), worktree),
            extra_read=[(runtime, Path("/shown"))],
        )
    finally:
        home.rmdir()
        runtime.rmdir()
    assert args[args.index(f"/shown/{home.name}") - 1] == "--tmpfs"


def test_a_declared_path_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    """Bound as a link, a declared path shows what the link leads to, unchecked, and hiding
    reads its text: each source must still be the real path that was checked."""
    from outloop_cli.errors import CouldNotRun

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    worktree = tmp_path / "worktree"
    worktree.mkdir()

    def line() -> list[str]:
        return wrap(
            ["/bin/true"],
            bwrap="bwrap",
            worktree=worktree,
            git=GitMounts((), worktree),
            extra_write=[(data, data), (data / "sub", data / "sub")],
        )

    assert str(data / "sub") in line()
    (data / "sub").rmdir()
    (data / "sub").symlink_to("../..")
    with pytest.raises(CouldNotRun, match="replaced by a link"):
        line()
