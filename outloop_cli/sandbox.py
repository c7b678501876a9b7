"""``sandbox: bwrap``: run the agent inside bubblewrap.

What the sandbox takes away from the agent, and why:

* other processes: a new PID namespace with its own ``/proc``, so the agent
  cannot read outloop's (or anyone's) ``/proc/<pid>/environ`` or ``cmdline``;
* the user's files: ``$HOME``, ``/tmp`` and ``/run`` are empty tmpfs (no
  keyring files, no ssh keys, no D-Bus session socket path), and outloop's
  own state and config directories are hidden when they live elsewhere;
* the repository's control files: the git directory is writable (objects,
  the worktree's index and HEAD) but ``hooks/``, ``config`` and outloop's run
  records (audit log included) are read-only, so the agent can neither plant
  a hook the user would run later nor rewrite the record of what it did;
* the terminal: ``--new-session`` stops TIOCSTI keystroke injection.

What stays: the network namespace (the agent must reach the loopback access
proxy), the rest of the file system read-only, and the worktree read-write.
Abstract Unix sockets are per network namespace, so a session bus listening
on one stays reachable; see docs/security.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from outloop_cli.errors import CouldNotRun


def bwrap_program(path: str | None) -> str:
    found = shutil.which("bwrap", path=path)
    if found is None:
        raise CouldNotRun(
            "`sandbox: bwrap` needs bubblewrap, which is not installed",
            hint="install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
            "bubblewrap), or set `sandbox: none` in the loop file",
        )
    return found


def _existing(paths: Sequence[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        resolved = path.resolve()
        if resolved.is_dir() and resolved not in seen and resolved != Path("/"):
            seen.append(resolved)
    return seen


def wrap(
    argv: Sequence[str],
    *,
    bwrap: str,
    worktree: Path,
    git_dir: Path,
    writable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
) -> list[str]:
    """The bwrap command line that runs ``argv`` in ``worktree``.

    ``hidden`` directories become empty tmpfs; ``writable`` ones (and the
    worktree) are bound read-write on top, so a writable path may sit inside a
    hidden one (the worktree lives under outloop's state directory).
    """
    worktree = worktree.resolve()
    git_dir = git_dir.resolve()
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run",
    ]
    for path in _existing(hidden):
        args += ["--tmpfs", str(path)]
    args += ["--bind", str(git_dir), str(git_dir)]
    for name in ("hooks", "config", "outloop", "info"):
        target = git_dir / name
        if target.exists():
            args += ["--ro-bind", str(target), str(target)]
    for path in _existing([*writable, worktree]):
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(worktree), "--", *argv]
    return args
