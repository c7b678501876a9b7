"""The sandbox's command line: the agent's turn and the goal inside bubblewrap.

The view is an allow-list, built up from an empty root:

* the system, read-only: ``/usr`` and the top-level directories it backs
  (``/bin``, ``/lib*``, ``/sbin``, as links where the host has links), and of
  ``/etc`` only what programs need to start, resolve ``localhost``, verify TLS
  and name their user (``ETC_ENTRIES``): no ``shadow``, no ``ssh``, no private
  keys under ``/etc/ssl``, no system git or pip config;
* the programs that run: the install root of the agent's program and of every
  program a goal script names, a script's own directory, a venv's base
  interpreter, a ``#!`` interpreter, a version manager's root for its shims;
  never a root that would show ``$HOME``, outloop's state or the repository
  (``protected``): then the file alone;
* the worktree read-write; the agent's private git dir read-write and the
  object stores it borrows read-only (``git_dir_args``); the loop's declared
  ``read``/``write`` paths (checked before the run by ``extra_paths.py``);
* a fresh, empty ``$HOME``, ``/tmp``, ``/var/tmp`` and ``/run``.

Nothing else of the host is there: no other repository, no other run's
worktree, no outloop state, no ``/home``, ``/root``, ``/srv``, ``/opt``,
``/mnt`` or ``/media``.

What else the sandbox takes away, and why:

* other processes: a new PID namespace with its own ``/proc``, so the agent
  cannot read outloop's (or anyone's) ``/proc/<pid>/environ`` or ``mem``; the
  kernel's knobs in ``/proc`` (``sys``, ``sysrq-trigger``, ``irq``, ``bus``,
  ``fs``) are read-only, since uid 0 inside is uid 0 to their owner check,
  and ``/proc/keys`` is empty;
* the user's repository: only its objects are shown, read-only, and the
  agent's own private git dir is the one writable git dir (:func:`git_dir_args`),
  so no branch, tag, reflog, stash, config or hook of the user's (nor of a
  submodule's git dir) can be changed, nor outloop's run records;
* the terminal: ``--new-session`` stops TIOCSTI keystroke injection;
* the kernel keyring: the child joins a new anonymous session keyring before
  bubblewrap starts (``process/session_keyring.py``), so what the runner's
  session holds cannot be requested or read;
* root: its own user namespace with every capability dropped, and no nested
  user namespace, so an agent run as root cannot unmount a read-only bind;
* the network: a namespace of its own with only loopback, so no host, no
  port and no abstract Unix socket of the machine (a session bus listening on
  one included) is reachable; the access proxy answers on 127.0.0.1 with its
  own port, on a listening socket made inside and handed out to it
  (``relay.py``, ``handoff.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.spawn import run_captured
from outloop_cli.sandbox.ports import SandboxPort, homes_to_hide
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


# Top-level system directories, read-only (a link on a merged-/usr system stays a link).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# What of /etc programs need: the dynamic linker's cache, users and groups by name,
# localhost and the resolver's order, time zone, locale, terminal, MIME and magic
# data, the CA certificates (never /etc/ssl/private), Debian's alternatives links
# and Python's own config. Left out on purpose: shadow files, ssh, sudoers, the
# system git, pip and npm config (a token may sit in one), machine-id, hostname.
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "locale.alias",
    "locale.conf",
    "mime.types",
    "magic",
    "magic.mime",
    "terminfo",
    "inputrc",
    "protocols",
    "services",
    "shells",
    "os-release",
    "lsb-release",
    "debian_version",
    "alternatives",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/tls/cert.pem",
    "pki/tls/openssl.cnf",
    "pki/ca-trust",
    "crypto-policies",
    "python3",
)

# Kernel knobs in /proc that check only the uid (0 inside is 0 to them): read-only.
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
# Host facts no agent needs: shown empty (/proc/keys names every key the user may view).
_PROC_EMPTY = ("/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug")


def wrap(
    argv: Sequence[str],
    *,
    bwrap: str,
    worktree: Path,
    git: GitMounts,
    writable: Sequence[Path] = (),
    readable: Sequence[Path] = (),
    extra_read: Sequence[tuple[Path, Path]] = (),
    extra_write: Sequence[tuple[Path, Path]] = (),
    home: Path | None = None,
    protected: Sequence[Path] = (),
    path_env: str | None = None,
    shell_command: str | None = None,
    relays: Sequence[SandboxPort] = (),
    read_only_worktree: bool = False,
    etc: Path | None = None,
    roots: ProgramRoots | None = None,
    real: RealPaths | None = None,
) -> list[str]:
    """The bwrap command line that runs ``argv`` in ``worktree``.

    ``writable`` directories (and the worktree) are bound read-write,
    ``readable`` files read-only; ``extra_read``/``extra_write`` are the loop's
    declared paths as (source, where it appears), already checked. ``home``
    (default: ``$HOME``) is an empty directory of the sandbox's own. No program's root may show a
    ``protected`` directory (``$HOME``, outloop's state, the repository).
    Each of ``relays`` is a 127.0.0.1 port inside answered by a server outside
    (its Unix sockets are bound in, ``relay.py`` binds the port): the access
    proxy, the egress proxy. Their handoff sockets serve one start, so a
    command line with relays is run once.
    ``read_only_worktree`` shows the worktree read-only (the judge's view of a commit).
    ``etc`` is a copy of the allowed ``/etc`` entries made by :func:`etc_view`,
    shown as ``/etc`` with one mount instead of one per entry. ``roots`` keeps
    what each command's programs need in view across the calls of one run,
    ``real`` the real paths of the directories and files it binds.
    """
    real = real or RealPaths()
    worktree = real.path(worktree)
    home = (home or Path.home()).absolute()
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
        # the access proxy answers on a socket made inside (see relay.py)
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *(system_mounts() if etc is None else [*_system_dirs(), *_etc_args(etc)]),
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    for path in _PROC_READ_ONLY:
        args += ["--ro-bind-try", path, path]
    for path in _proc_empty():
        args += ["--ro-bind", "/dev/null", path]
    # empty directories of the sandbox's own root, a tmpfs bubblewrap made for this
    # sandbox alone and that goes with it: as private as a tmpfs each, without a
    # mount each (bubblewrap pays for every mount, and more the more there are)
    args += ["--dir", "/tmp", "--dir", "/var/tmp", "--dir", "/run"]
    if not _under(home, [Path(d) for d in SYSTEM_DIRS]) and home != Path("/"):
        # a directory hides nothing: a $HOME where the view has mounted something
        # already (/etc, /dev, /proc) still needs a tmpfs of its own to be empty
        mounted = _under(home, [Path("/etc"), Path("/dev"), Path("/proc")])
        args += ["--tmpfs" if mounted else "--dir", str(home)]
    args += git_dir_args(git, real)
    command = list(argv)
    programs = [*command[:1], *_programs_in(shell_command), *_shell_programs(command)]
    if relays:
        inside: list[SandboxPort] = []
        for index, relay in enumerate(relays):
            seen = SandboxPort(
                relay.port,
                Path(f"/run/outloop-relay-{index}.sock"),
                Path(f"/run/outloop-handoff-{index}.sock"),
            )
            args += ["--bind", str(relay.socket), str(seen.socket)]
            # made for this start alone, and gone once used or unused for a while: should
            # it be gone already, the relay finds no socket and relays through the other
            args += ["--bind-try", str(relay.handoff), str(seen.handoff)]
            inside.append(seen)
        command = [*_relay_argv(inside), *command]
        programs.append(sys.executable)
    keep_out = real.existing((home, *protected))
    find = _program_roots if roots is None else roots.find
    for root in find(programs, argv[1:], path_env, keep_out):
        # a root can be reached through a link (a program called by a linked path):
        # bound from its real path, so that every bind's source is one (see hide())
        args += ["--ro-bind", str(real.path(root)), str(root)]
    for file in real.files(readable):
        args += ["--ro-bind", str(file), str(file)]
    for source, _target in [*extra_read, *extra_write]:
        _still_real(source, real)
    for source, target in extra_read:
        args += ["--ro-bind-try", str(source), str(target)]
    for source, target in extra_write:
        args += ["--bind-try", str(source), str(target)]
    if read_only_worktree:
        args += ["--ro-bind", str(worktree), str(worktree)]
    for directory in real.dirs([*writable, *([] if read_only_worktree else [worktree])]):
        args += ["--bind", str(directory), str(directory)]
    # the relays' handoff sockets are bound one by one; their directories, which hold
    # other starts' (and other runs') sockets too, stay out of every view, relays or not
    # (made now if missing: a directory made later, under a bind of this view, would show)
    hidden = [real.path(relay.handoff.parent) for relay in relays]
    hidden += [real.path(home) for home in homes_to_hide()]
    args += hide(args, hidden)
    args += ["--chdir", str(worktree), "--", *command]
    return args


def _still_real(source: Path, real: RealPaths) -> None:
    """A declared path, resolved when the run was planned, still is what was checked.

    Bound as a link it would show whatever the link leads to (the kernel follows
    it), unchecked, and hide() would not see it: a source must be a real path.
    Nothing of the agent's runs while a command line is built (its sandbox, and
    every process of it, is gone).
    """
    now = real.path(source)
    if now != source:
        raise CouldNotRun(
            f"the declared sandbox path {source} now leads to {now}: it was replaced by a "
            "link since the run was planned",
            hint="see what changed there; the loop's `sandbox:` paths are bound as they "
            "were checked, or not at all",
        )


# how many arguments each option of the command lines built here takes
_ARITY = {
    "--bind": 2,
    "--bind-try": 2,
    "--ro-bind": 2,
    "--ro-bind-try": 2,
    "--symlink": 2,
    "--cap-drop": 1,
    "--chdir": 1,
    "--dev": 1,
    "--dir": 1,
    "--proc": 1,
    "--tmpfs": 1,
}
_BINDS = ("--bind", "--bind-try", "--ro-bind", "--ro-bind-try")
_FLAGS = frozenset(
    (
        "--die-with-parent",
        "--new-session",
        "--unshare-user",
        "--disable-userns",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    )
)


def hide(args: Sequence[str], hidden: Sequence[Path]) -> list[str]:
    """``--tmpfs`` over each place where a bind in ``args`` shows one of ``hidden``.

    A bind of a directory above a hidden one (``/tmp`` as a program's root, a
    loop's declared path) would show it, wherever it appears in the sandbox;
    an empty tmpfs mounted there after it hides it again. A bind of something
    inside a hidden directory (one socket of it) is left as it is. Sources
    and ``hidden`` are compared as written: ``wrap`` binds from real paths
    only (the kernel follows a link in a source, so a linked one would show
    what its text does not say), and ``hidden`` are real paths too.
    """
    masks: list[str] = []
    # as strings: two lines a turn, some thirty binds each (a Path each cost 0.3 ms a line)
    inner = [str(directory) for directory in hidden]
    index = 1
    while index < len(args) and args[index] != "--":
        option = args[index]
        if option in _BINDS and inner:
            source = args[index + 1]
            prefix = source if source.endswith("/") else source + "/"
            for directory in inner:
                if directory == source or directory.startswith(prefix):
                    rest = directory[len(prefix) :] if directory != source else ""
                    target = Path(args[index + 2])
                    masks += ["--tmpfs", str(target / rest if rest else target)]
        elif option not in _ARITY and option not in _FLAGS:
            # an option added to wrap() must be added here, or binds go unseen
            raise ValueError(f"not an option of this command line: {option!r}")
        index += 1 + _ARITY.get(option, 0)
    return _unique_pairs(masks)


def _unique_pairs(masks: list[str]) -> list[str]:
    seen: list[str] = []
    out: list[str] = []
    for option, path in zip(masks[::2], masks[1::2], strict=True):
        if path not in seen:
            seen.append(path)
            out += [option, path]
    return out


@dataclass(frozen=True)
class GitMounts:
    """The git dirs the agent's git needs: objects to read, its own git dir to write."""

    # the user's object store (and the stores it borrows from), outloop's for the run
    read_only: tuple[Path, ...]
    # the agent's private git dir: its refs, index, config, hooks and new objects
    # (None: no git dir is writable, as for the judge)
    writable: Path | None


def git_dir_args(git: GitMounts, real: RealPaths | None = None) -> list[str]:
    """Bind the object stores read-only and the agent's git dir read-write, nothing else.

    Everything else of the user's git directory stays as the rest of the file
    system shows it (read-only, or not at all).
    """
    real = real or RealPaths()
    args: list[str] = []
    for path in real.dirs(git.read_only):
        args += ["--ro-bind", str(path), str(path)]
    if git.writable is not None:
        agent = real.path(git.writable)
        args += ["--bind", str(agent), str(agent)]
    return args


def probe_argv(bwrap: str) -> list[str]:
    """The smallest sandbox of a run's kind (own user, PID and network namespaces): ``true``."""
    return [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--cap-drop",
        "ALL",
        *system_mounts(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "true",
    ]


def system_mounts() -> list[str]:
    """The system directories and the /etc entries every sandbox shows, read-only."""
    return list(_system_mounts())


@functools.cache
def _system_dirs() -> tuple[str, ...]:
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    return tuple(args)


@functools.cache
def _system_mounts() -> tuple[str, ...]:
    # looked at once per process: a run starts two sandboxes per iteration
    args = [*_system_dirs(), "--dir", "/etc"]
    for entry in ETC_ENTRIES:
        path = Path("/etc", entry)
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return tuple(args)


def etc_view(dest: Path) -> Path:
    """``dest`` made into the sandbox's ``/etc``: the ``ETC_ENTRIES`` that are files, copied.

    bubblewrap pays for every mount, and more for each one the more there
    are (it rereads the mount table for each read-only bind): one bind per
    entry cost a sandboxed process more than everything else in its view.
    Files and links are copied once per run into ``dest`` (links as links,
    never followed: a link to ``/etc/shadow`` stays a link to a file that is
    not in view), and ``dest`` is bound read-only as ``/etc``. A directory
    entry is copied whole when it is small (``_copied_etc_dirs``: a few
    readable files and links, as ``ld.so.conf.d`` or ``python3`` are); one
    whose files are many (``ssl/certs``, ``alternatives``) is bound on top, as
    before, onto an empty mount point made here. So the sandbox shows exactly
    the same entries. A file this user cannot read is left out: it could not
    be read inside either. Made anew each time (``dest`` is the run's own,
    outside any view).
    """
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, mode=0o755)
    for entry in ETC_ENTRIES:
        source = Path("/etc", entry)
        target = dest / entry
        if not source.is_symlink() and not source.exists():
            continue
        for parent in reversed(Path(entry).parents[:-1]):
            # a parent keeps its mode (/etc/ssl may be 0700)
            made = dest / parent
            if not made.exists():
                made.mkdir(mode=0o755)
                with contextlib.suppress(OSError):
                    shutil.copymode(Path("/etc", parent), made)
        try:
            if source.is_symlink():
                target.symlink_to(source.readlink())
            elif source.is_dir():
                if entry in _copied_etc_dirs():
                    shutil.copytree(source, target, symlinks=True)
                else:
                    target.mkdir(mode=0o755)
            elif source.is_file():
                shutil.copy2(source, target)
        except PermissionError:
            continue  # unreadable here: unreadable inside the sandbox too
    return dest


def _etc_args(etc: Path) -> list[str]:
    """``etc`` (from :func:`etc_view`) as ``/etc``, its directory entries bound on top."""
    args = ["--ro-bind", str(etc), "/etc"]
    copied = _copied_etc_dirs()
    for entry in _etc_dirs():
        if entry not in copied and (etc / entry).is_dir():
            args += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
    return args


@functools.cache
def _etc_dirs() -> tuple[str, ...]:
    return tuple(
        e for e in ETC_ENTRIES if Path("/etc", e).is_dir() and not Path("/etc", e).is_symlink()
    )


# a directory of /etc up to this many entries (and bytes) is copied, not bound: copying
# it costs a run less than one mount costs each sandbox start (two an iteration)
_SMALL_DIR_ENTRIES = 32
_SMALL_DIR_BYTES = 1 << 20


@functools.cache
def _copied_etc_dirs() -> frozenset[str]:
    """The directory entries of /etc that :func:`etc_view` copies: decided once per process,
    so a view and the command lines built on it always agree on what is bound."""
    return frozenset(e for e in _etc_dirs() if _small_and_readable(Path("/etc", e)))


def _small_and_readable(directory: Path) -> bool:
    """Only directories, regular files and links, every one readable here, and few of them:
    a copy then shows the sandbox what a bind would (anything else keeps its bind).

    Fails closed: a directory that cannot be listed (``os.walk`` would skip it
    without a word, and the copy would then fail) keeps the bind.
    """
    entries = 0
    size = 0
    stack = [str(directory)]
    try:
        while stack:
            here = stack.pop()
            if not os.access(here, os.R_OK | os.X_OK):
                return False
            with os.scandir(here) as listing:
                for entry in listing:
                    entries += 1
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
                    elif stat.S_ISREG(info.st_mode):
                        if not os.access(entry.path, os.R_OK):
                            return False
                        size += info.st_size
                    elif not stat.S_ISLNK(info.st_mode):
                        return False
                    if entries > _SMALL_DIR_ENTRIES or size > _SMALL_DIR_BYTES:
                        return False
    except OSError:
        return False
    return True


@functools.cache
def _proc_empty() -> tuple[str, ...]:
    # a bind needs its mount point: only the files this kernel has
    return tuple(path for path in _PROC_EMPTY if Path(path).exists())


class RealPaths:
    """The real paths of what a run's sandboxes bind, found once and checked at every use.

    A command line binds the real path of each directory and file (the worktree,
    the git dirs, the run's own state), and compares them with what must stay
    out of view. Resolving a path walks it component by component, and a run
    builds two command lines an iteration from the same dozen paths, all of
    them outside every sandbox's reach. So each answer is kept, and taken again
    only while the path (followed) and its real path (not followed) are still
    one and the same file: anything else (gone, replaced, a link now, a link
    on the way pointed elsewhere) resolves anew.
    """

    def __init__(self) -> None:
        self._found: dict[Path, tuple[Path, int, tuple[int, int, int]]] = {}

    def path(self, path: Path) -> Path:
        """``path.resolve()``: the real path, whether or not it exists."""
        found = self._lookup(path)
        return found[0] if found is not None else path.resolve()

    def existing(self, paths: Sequence[Path]) -> list[Path]:
        """The real paths of those of ``paths`` that exist, in order."""
        return [found[0] for found in map(self._lookup, paths) if found is not None]

    def dirs(self, paths: Sequence[Path]) -> list[Path]:
        """The real paths of the directories among ``paths``, each once, never ``/``."""
        seen: list[Path] = []
        for found in map(self._lookup, paths):
            if found is None or not stat.S_ISDIR(found[1]):
                continue
            if found[0] not in seen and found[0] != Path("/"):
                seen.append(found[0])
        return seen

    def files(self, paths: Sequence[Path]) -> list[Path]:
        """The real paths of the regular files among ``paths``, each once."""
        return list(
            dict.fromkeys(
                found[0]
                for found in map(self._lookup, paths)
                if found is not None and stat.S_ISREG(found[1])
            )
        )

    def _lookup(self, path: Path) -> tuple[Path, int] | None:
        """(real path, ``st_mode``) of ``path``, None when nothing is there."""
        known = self._found.get(path)
        if known is not None:
            real, mode, identity = known
            # the same file, reached both ways: through ``path`` (every link and parent
            # on the way followed again) and at the real path, which is no link
            try:
                same = _identity(path.stat()) == identity == _identity(real.lstat())
            except OSError:
                same = False
            if same:
                return real, mode
            del self._found[path]
        try:
            resolved = path.resolve()
            info = resolved.stat()
        except (OSError, RuntimeError):  # missing, unreadable, or a loop of links
            return None
        # kept only for an absolute path (a relative one depends on the working
        # directory) whose real path is no link (a loop, or changed since the walk)
        if path.is_absolute() and not resolved.is_symlink():
            self._found[path] = (resolved, info.st_mode, _identity(info))
        return resolved, info.st_mode


def _identity(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_dev, info.st_ino, stat.S_IFMT(info.st_mode)


def _relay_argv(ports: Sequence[SandboxPort]) -> list[str]:
    """outloop's Python running relay.py's source: binds each 127.0.0.1:port inside."""
    source = _relay_source()
    flat = [part for p in ports for part in (str(p.port), str(p.socket), str(p.handoff))]
    return [sys.executable, "-I", "-S", "-c", source, *flat, "--"]


@functools.cache
def _relay_source() -> str:
    return (Path(__file__).parent / "relay.py").read_text()


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
    """Whether ``path`` is one of ``roots`` or below one (lexically, as ``Path.parents``)."""
    return any(_contains(root, path) for root in roots)


def _contains(outer: Path, inner: Path) -> bool:
    """``inner == outer or outer in inner.parents``, on the strings: a run builds two
    sandbox lines an iteration and asks this hundreds of times for each, where pathlib's
    ``parents`` costs microseconds a time. Both are absolute, as every caller's are."""
    a, b = str(outer), str(inner)
    return a == b or b.startswith(a if a.endswith("/") else a + "/")


def _install_root(path: Path) -> Path:
    """The directory an executable was installed into: ``<prefix>`` for ``<prefix>/bin/x``."""
    return path.parent.parent if path.parent.name == "bin" else path.parent


_SHELLS = ("sh", "bash", "dash", "zsh")


def _shell_programs(argv: Sequence[str]) -> list[str]:
    """``sh -c SCRIPT NAME ARGS…``: the programs SCRIPT names, and NAME (its ``$0``, often exec'd)."""
    if len(argv) < 3 or Path(argv[0]).name not in _SHELLS or argv[1] != "-c":
        return []
    return [*_programs_in(argv[2]), *argv[3:4]]


def _programs_in(script: str | None) -> list[str]:
    """The words of a shell script that may name a program (best effort: never fails)."""
    return [w for w in script_words(script) if w and not w.startswith("-") and "=" not in w]


class ProgramRoots:
    """What a run's commands need in view (``_program_roots``), found once per program.

    Each program a command names (and each script it is given by absolute
    path) is looked up the first time a sandbox of the run needs it, instead
    of for every sandbox (two an iteration, ~0.5 ms each). The search reads
    files a turn can change, a ``#!`` line of a tool in a writable directory
    on PATH among them; found once, the view no longer follows what an agent
    writes there. Memoized per program, not per command line: an agent's
    command line changes every turn (its prompt, ``{iteration}``), and a view
    found anew for it would follow what the last turn planted. A program first
    named after a turn (by the judge's command) is found then, as it would be
    without this memo.
    """

    def __init__(self) -> None:
        self._programs: dict[tuple[object, ...], list[Path]] = {}
        self._scripts: dict[tuple[object, ...], list[Path]] = {}

    def find(
        self,
        programs: Sequence[str],
        args: Sequence[str],
        path_env: str | None,
        keep_out: Sequence[Path],
    ) -> list[Path]:
        keep = tuple(keep_out)
        found: list[Path] = []
        for name in _named(programs):
            program = (name, path_env, keep)
            roots = self._programs.get(program)
            if roots is None:
                roots = self._programs[program] = _roots_of_program(name, path_env, keep)
            found += roots
        for arg in _scripts(args):
            script = (arg, keep)
            roots = self._scripts.get(script)
            if roots is None:
                roots = self._scripts[script] = _roots_of_script(arg, keep)
            found += roots
        return _in_view(found)


def _program_roots(
    programs: Sequence[str], args: Sequence[str], path_env: str | None, keep_out: Sequence[Path]
) -> list[Path]:
    """What the programs that run need in view: install roots, a script's own directory.

    Each program found on ``path_env`` brings its install root (``<prefix>`` of
    ``<prefix>/bin/x``), both where it is called and where its links lead; a
    venv brings its base interpreter, a ``#!`` line its interpreter, a shim its
    version manager. A script given by absolute path brings its directory (its
    modules sit beside it). A root that would show a ``keep_out`` directory
    shrinks to the program's own directory, and then to the file alone.
    """
    found = [
        root for name in _named(programs) for root in _roots_of_program(name, path_env, keep_out)
    ]
    found += [root for arg in _scripts(args) for root in _roots_of_script(arg, keep_out)]
    return _in_view(found)


def _named(programs: Sequence[str]) -> list[str]:
    # a relative path names a program in the worktree, which is in view already
    return list(dict.fromkeys(n for n in programs if "/" not in n or n.startswith("/")))


def _scripts(args: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(a for a in args if a.startswith("/")))


def _roots_of_program(name: str, path_env: str | None, keep_out: Sequence[Path]) -> list[Path]:
    """The roots one program brings, its interpreters' (``#!``, a venv's base) included."""
    found: list[Path] = []
    first = shutil.which(name, path=path_env)
    queue = [Path(first)] if first else []
    seen: set[Path] = set()
    while queue:
        program = queue.pop(0)
        if program in seen:
            continue
        seen.add(program)
        for path in dict.fromkeys([program.absolute(), program.resolve()]):
            found += _view_of(_root_of(path), path, keep_out, inside_ok=True)
            venv = _install_root(path) / "pyvenv.cfg"
            if venv.is_file():
                found += [
                    root
                    for base in _venv_base(venv)
                    for root in _view_of(base, base, keep_out, inside_ok=True)
                ]
        queue += _interpreter(program, path_env)
    return found


def _roots_of_script(arg: str, keep_out: Sequence[Path]) -> list[Path]:
    """A script given by absolute path: its directory (or less, beside a kept-out one)."""
    if not Path(arg).is_file():
        return []
    found: list[Path] = []
    for path in dict.fromkeys([Path(arg).absolute(), Path(arg).resolve()]):
        found += _view_of(path.parent, path, keep_out, inside_ok=False)
    return found


def _in_view(found: Sequence[Path]) -> list[Path]:
    system = [Path(d) for d in SYSTEM_DIRS]
    return [
        p for p in dict.fromkeys(found) if p.exists() and p != Path("/") and not _under(p, system)
    ]


def _root_of(path: Path) -> Path:
    # pyenv, rbenv and asdf shims run the manager's own scripts from its root
    if path.parent.name == "shims":
        return path.parent.parent
    return _install_root(path)


def _view_of(root: Path, path: Path, keep_out: Sequence[Path], *, inside_ok: bool) -> list[Path]:
    """``root``, or less of it when it would show what must stay out of view."""
    for candidate in (root, path.parent):
        if _covers(candidate, keep_out):
            continue
        if not inside_ok and _under(candidate, keep_out):
            continue
        return [candidate]
    return [path]


def _covers(path: Path, keep_out: Sequence[Path]) -> bool:
    """Whether binding ``path`` would show a whole directory that must stay out of view."""
    return any(_contains(path, root) for root in keep_out)


def _interpreter(program: Path, path_env: str | None) -> list[Path]:
    """The program a ``#!`` line runs (``#!/usr/bin/env node`` looks ``node`` up on PATH)."""
    try:
        with program.open("rb") as f:
            line = f.readline(256)
    except OSError:
        return []
    if not line.startswith(b"#!"):
        return []
    words = line[2:].decode("utf-8", "replace").split()
    if not words:
        return []
    if Path(words[0]).name == "env":
        names = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        found = shutil.which(names[0], path=path_env) if names else None
        return [Path(found)] if found else []
    return [Path(words[0])] if Path(words[0]).is_file() else []


def _venv_base(config: Path) -> list[Path]:
    """A venv's python links to its base interpreter, whose prefix must be in view too."""
    for line in config.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return [_install_root(Path(value.strip()).resolve() / "python")]
    return []
