"""``sandbox: bwrap``: run the agent inside bubblewrap.

What the sandbox takes away from the agent, and why:

* other processes: a new PID namespace with its own ``/proc``, so the agent
  cannot read outloop's (or anyone's) ``/proc/<pid>/environ`` or ``cmdline``;
* the user's files: ``$HOME``, ``/tmp`` and ``/run`` are empty tmpfs (no
  keyring files, no ssh keys, no D-Bus session socket path), and outloop's
  own state and config directories are hidden when they live elsewhere;
* the user's repository: only its objects are shown, read-only, and the
  agent's own private git dir is the one writable git dir (:func:`git_dir_args`),
  so no branch, tag, reflog, stash, config or hook of the user's (nor of a
  submodule's git dir) can be changed, nor outloop's run records;
* the terminal: ``--new-session`` stops TIOCSTI keystroke injection;
* root: its own user namespace with every capability dropped, and no nested
  user namespace, so an agent run as root cannot unmount a read-only bind.

* the network: a namespace of its own with only loopback, so no host, no
  port and no abstract Unix socket of the machine (a session bus listening on
  one included) is reachable; the access proxy comes in as a Unix socket,
  relayed on 127.0.0.1 with the proxy's own port (``relay.py``).

What stays: the rest of the file system read-only, and the worktree
read-write.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.spawn import run_captured
from outloop_cli.shell_words import script_words


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
    git: GitMounts,
    writable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
    path_env: str | None = None,
    shell_command: str | None = None,
    relays: Sequence[tuple[int, Path]] = (),
) -> list[str]:
    """The bwrap command line that runs ``argv`` in ``worktree``.

    ``hidden`` directories become empty tmpfs; ``writable`` ones (and the
    worktree) are bound read-write on top, so a writable path may sit inside a
    hidden one (the worktree lives under outloop's state directory). The agent's
    own program stays visible (read-only) when it lives in a hidden place: a
    venv or pyenv under ``$HOME``, a script under ``/tmp``. Each of ``relays``
    (port, Unix socket outside) is bound in and relayed on 127.0.0.1:port
    inside: the access proxy, the egress proxy.
    """
    worktree = worktree.resolve()
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        # root is not root inside: a user namespace of its own, every capability
        # dropped (as root, bwrap would otherwise keep them, and an agent could
        # unmount the read-only binds and write through to the host), no nested
        # user namespace to win them back
        "--unshare-user",
        "--cap-drop",
        "ALL",
        *(["--disable-userns"] if _supports(bwrap, "--disable-userns") else []),
        "--unshare-pid",
        # only loopback: no host, no port and no abstract socket of the machine;
        # the access proxy comes in as a Unix socket (see relay.py)
        "--unshare-net",
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
    args += git_dir_args(git)
    command = list(argv)
    programs = [*command[:1], *_programs_in(shell_command)]
    if relays:
        pairs: list[tuple[int, str]] = []
        for index, (port, socket_path) in enumerate(relays):
            inside = f"/run/outloop-relay-{index}.sock"
            args += ["--bind", str(socket_path), inside]
            pairs.append((port, inside))
        command = [*_relay_argv(pairs), *command]
        programs.append(sys.executable)
    for path in _program_roots(programs, argv[1:], path_env, [Path("/tmp"), Path("/run"), *hidden]):
        args += ["--ro-bind", str(path), str(path)]
    for path in _existing([*writable, worktree]):
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(worktree), "--", *command]
    return args


@dataclass(frozen=True)
class GitMounts:
    """The git dirs the agent's git needs: objects to read, its own git dir to write."""

    # the user's object store (and the stores it borrows from), outloop's for the run
    read_only: tuple[Path, ...]
    # the agent's private git dir: its refs, index, config, hooks and new objects
    writable: Path


def git_dir_args(git: GitMounts) -> list[str]:
    """Bind the object stores read-only and the agent's git dir read-write, nothing else.

    Everything else of the user's git directory stays as the rest of the file
    system shows it (read-only, or not at all).
    """
    args: list[str] = []
    for path in _existing(git.read_only):
        args += ["--ro-bind", str(path), str(path)]
    agent = git.writable.resolve()
    args += ["--bind", str(agent), str(agent)]
    return args


def _relay_argv(pairs: Sequence[tuple[int, str]]) -> list[str]:
    """outloop's Python running relay.py's source: listens on each 127.0.0.1:port inside."""
    source = (Path(__file__).parent / "relay.py").read_text()
    flat = [part for port, inside in pairs for part in (str(port), inside)]
    return [sys.executable, "-I", "-S", "-c", source, *flat, "--"]


@functools.lru_cache(maxsize=8)
def _supports(bwrap: str, option: str) -> bool:
    """Whether this bubblewrap knows ``option`` (``--disable-userns`` came with 0.8)."""
    try:
        done = run_captured(
            [bwrap, "--help"], cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, timeout=10
        )
    except CouldNotRun:
        return False
    return option.encode() in done.stdout + done.stderr


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _install_root(path: Path) -> Path:
    """The directory an executable was installed into: ``<prefix>`` for ``<prefix>/bin/x``."""
    return path.parent.parent if path.parent.name == "bin" else path.parent


def _programs_in(script: str | None) -> list[str]:
    """The words of a shell script that may name a program (best effort: never fails)."""
    return [w for w in script_words(script) if w and not w.startswith("-") and "=" not in w]


def _program_roots(
    programs: Sequence[str], args: Sequence[str], path_env: str | None, hidden: Sequence[Path]
) -> list[Path]:
    """Directories the sandboxed programs need that a hidden directory would cover."""
    roots = [p.resolve() for p in hidden if p.exists()]
    found: list[Path] = []
    # (path, found on PATH): a program's install root is kept, a plain file's directory
    candidates: list[tuple[Path, bool]] = []
    for name in programs:
        program = shutil.which(name, path=path_env)
        if program:
            candidates.append((Path(program), True))
    candidates += [(Path(arg), False) for arg in args if arg.startswith("/") and Path(arg).exists()]
    any_program = any(is_program for _, is_program in candidates)
    for candidate, _ in candidates:
        for path in dict.fromkeys([candidate.absolute(), candidate.resolve()]):
            if not _under(path, roots):
                continue
            root = (
                _install_root(path) if path == candidate.absolute() or any_program else path.parent
            )
            if _covers_hidden(root, roots):
                # a program straight in ~/bin must not bring all of $HOME back into view
                root = path.parent
                if _covers_hidden(root, roots):
                    continue
            found.append(root)
            venv = _install_root(path) / "pyvenv.cfg"
            if venv.is_file():
                found += _venv_base(venv, roots)
    return [p for p in dict.fromkeys(found) if p.is_dir() and p != Path("/")]


def _covers_hidden(path: Path, roots: Sequence[Path]) -> bool:
    """Whether binding ``path`` would show a whole hidden directory."""
    return any(path == root or path in root.parents for root in roots)


def _venv_base(config: Path, roots: Sequence[Path]) -> list[Path]:
    """A venv's python links to its base interpreter, which must be visible too."""
    for line in config.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            base = Path(value.strip()).resolve()
            if _under(base, roots):
                return [_install_root(base / "python")]
    return []
