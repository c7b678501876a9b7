"""A run's two git dirs: outloop's own, and the agent's private one.

The user's repository is never the agent's. Each run gets

* **outloop's git dir** (``RunGitDirs.own``): the run's index, its branch and
  its commits. Every git command outloop runs for the run names it and the
  work tree explicitly (:class:`~outloop_cli.git.cli.Git` with ``git_dir``),
  with no system or global config, so nothing the agent wrote (the work tree's
  ``.git`` file, a config, an attributes file) decides which repository or
  which config outloop's git uses. The sandbox does not show it writable.
* **the agent's git dir** (``RunGitDirs.agent``): what the work tree's ``.git``
  file points at, so ``git log``, ``diff``, ``blame`` and ``commit`` work
  inside the sandbox. Its refs, index, config and hooks are its own; its
  objects borrow the user's and outloop's read-only (``objects/info/alternates``).
  outloop reads only two things from it, by hand and never through git with
  its config: where its branch points, and the objects of the commits the
  agent made (copied into outloop's git dir, then scanned).

Both borrow the user's objects through ``objects/info/alternates``; the run's
commits reach the user's repository only when outloop imports them
(:meth:`~outloop_cli.git.repo.Repository.import_branch`).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import GitError
from outloop_cli.git.alternates import format_alternates, parse_alternates
from outloop_cli.git.cli import Git
from outloop_cli.store.atomic import atomic_write_bytes, move_file

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class UnsafeGitDir(GitError):
    """A path in the agent's git dir that outloop must write is a link or not a directory."""


@dataclass(frozen=True)
class RunGitDirs:
    """Where a run's git dirs and work tree are; all three come from outloop's records."""

    own: Path
    agent: Path
    work_tree: Path

    def git(self) -> Git:
        """outloop's git for this run: its own git dir and the work tree, named explicitly."""
        return Git(self.work_tree, git_dir=self.own, work_tree=self.work_tree)

    @property
    def gitfile_text(self) -> str:
        return f"gitdir: {self.agent}\n"


def create(
    dirs: RunGitDirs,
    *,
    user_objects: Path,
    branch: str,
    base: str,
    identity: tuple[str, str] | None = None,
    remotes: Mapping[str, str] | None = None,
) -> None:
    """Make both git dirs at ``base`` on ``branch`` and check ``base`` out into the work tree.

    ``identity`` (name, email) is what the agent's own ``git commit`` signs with;
    ``remotes`` (name → URL) are the user's, so ``git fetch origin`` works for
    the agent too: a URL with a user name or password in it is left out.
    """
    prepare(
        dirs,
        user_objects=user_objects,
        branch=branch,
        base=base,
        identity=identity,
        remotes=remotes,
    )
    check_out(dirs, branch, base)


def check_out(dirs: RunGitDirs, branch: str, base: str) -> None:
    """Write every file of ``base`` into a new work tree (the git dirs made by :func:`prepare`)."""
    dirs.work_tree.mkdir(parents=True, exist_ok=False)
    git = dirs.git()
    # no filters can run here: the only config is the one written by prepare()
    git.run("read-tree", "--reset", "-u", "HEAD")
    git.run("update-index", "--untracked-cache", "--index-version", "4", ok_codes=(0, 1, 128))
    sync_agent(dirs, branch, base)


def prepare(
    dirs: RunGitDirs,
    *,
    user_objects: Path,
    branch: str,
    base: str,
    identity: tuple[str, str] | None = None,
    remotes: Mapping[str, str] | None = None,
) -> None:
    """Both git dirs, the run's branch at ``base`` in outloop's: everything but the checkout.

    A fresh checkout (:func:`create`) or a finished run's work tree moved to
    ``base`` (:mod:`outloop_cli.git.reuse`) follows.
    """
    _init(dirs.own, [user_objects], branch)
    _init(dirs.agent, [user_objects, dirs.own / "objects"], branch)
    if identity is not None:
        _set_identity(dirs.agent, identity)
    agent_config = Git(dirs.agent, git_dir=dirs.agent)
    for name, url in (remotes or {}).items():
        if "@" in url.partition("://")[2].partition("/")[0] and "://" in url:
            continue
        agent_config.run("config", f"remote.{name}.url", url)
        agent_config.run("config", f"remote.{name}.fetch", f"+refs/heads/*:refs/remotes/{name}/*")
    # the work tree may not exist yet: the branch is outloop's git dir's alone
    own = Git(dirs.own, git_dir=dirs.own)
    own.run("update-ref", "-m", "outloop: run started", f"refs/heads/{branch}", base, "")


def recreate_work_tree(
    dirs: RunGitDirs, branch: str, identity: tuple[str, str] | None = None
) -> None:
    """A work tree deleted by hand (or by ``outloop clean``): check the branch out again."""
    dirs.work_tree.mkdir(parents=True, exist_ok=False)
    git = dirs.git()
    git.run("read-tree", "--reset", "-u", f"refs/heads/{branch}")
    if not dirs.agent.is_dir():
        recreate_agent(dirs, branch, identity)
    sync_agent(dirs, branch, git.run("rev-parse", "--verify", f"refs/heads/{branch}"))


def _set_identity(agent: Path, identity: tuple[str, str]) -> None:
    config = Git(agent, git_dir=agent)
    config.run("config", "user.name", identity[0])
    config.run("config", "user.email", identity[1])


def recreate_agent(dirs: RunGitDirs, branch: str, identity: tuple[str, str] | None = None) -> None:
    """The agent's git dir again (removed by ``outloop clean``), borrowing the same objects."""
    own_objects = dirs.own / "objects"
    alternates = parse_alternates((own_objects / "info" / "alternates").read_bytes(), own_objects)
    _init(dirs.agent, [alternates[0], own_objects], branch)
    if identity is not None:
        _set_identity(dirs.agent, identity)


def _init(git_dir: Path, alternates: list[Path], branch: str) -> None:
    """An empty git dir of the run's (no template, so no sample hooks) borrowing ``alternates``."""
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    git = Git(git_dir.parent, git_dir=git_dir)
    git.run("init", "--quiet", "--bare", "--template=")
    git.run("config", "core.bare", "false")
    info = git_dir / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_bytes(format_alternates(p.resolve() for p in alternates))
    (git_dir / "HEAD").write_text(f"ref: refs/heads/{branch}\n")


def owns_work_tree(dirs: RunGitDirs) -> bool:
    """Whether ``dirs.work_tree`` is this run's: outloop's git dir is there and the link names it."""
    if not (dirs.own / "HEAD").is_file():
        return False
    data = _read_regular(dirs.work_tree / ".git")
    return data is not None and data.decode(errors="replace") == dirs.gitfile_text


def remove_tree(path: Path) -> None:
    """Delete a directory tree, even one where the agent made a directory read-only."""
    import shutil  # with bz2, lzma and zlib: not on the start-up path of `status`

    if not path.is_dir() or path.is_symlink():
        return
    path.chmod(stat.S_IRWXU)
    # top-down: each directory is made writable before os.walk lists it
    for here, subdirs, _files in os.walk(path):
        for name in subdirs:
            sub = Path(here) / name
            if not sub.is_symlink():
                sub.chmod(stat.S_IRWXU)
    shutil.rmtree(path)


def remove_work_tree(dirs: RunGitDirs) -> None:
    """Delete the work tree and the agent's git dir; outloop's git dir keeps the run's commits."""
    for path in (dirs.work_tree, dirs.agent):
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)


def sync_agent(dirs: RunGitDirs, branch: str, sha: str) -> None:
    """Put the agent's git on outloop's last commit: HEAD, branch, index and the gitfile.

    Written without git (the agent's config is the agent's): each file is
    unlinked and created anew, never followed through a link, and a link or
    file where a directory should be is refused. The gitfile is left as it is
    when it already is a plain file saying exactly what it should: creating it
    anew changes the work tree's top directory, and git's untracked cache then
    reads that directory again and rewrites the whole index on the next status
    (17 ms an iteration at 100k files). Nothing of the agent's runs now.
    """
    if not _SHA_RE.match(sha):
        raise ValueError(f"not a full commit id: {sha!r}")
    _write_new(dirs.agent, "HEAD", f"ref: refs/heads/{branch}\n".encode())
    _write_new(dirs.agent, f"refs/heads/{branch}", f"{sha}\n".encode())
    # the index names its shared part (split index): that file first, so the index
    # never names one the agent's git dir lacks
    sync_shared_indexes(dirs.own, dirs.agent)
    # outloop's index matches the commit it just made (and the work tree's files)
    _write_new(dirs.agent, "index", source=dirs.own / "index")
    gitfile = dirs.work_tree / ".git"
    expected = dirs.gitfile_text.encode()
    if _read_regular(gitfile) == expected:
        return
    if gitfile.is_dir() and not gitfile.is_symlink():
        remove_tree(gitfile)
    gitfile.unlink(missing_ok=True)
    _create(gitfile, expected)


# the shared part of a split index (core.splitIndex): named for its own hash, never changed
_SHARED_INDEX_RE = re.compile(r"^sharedindex\.[0-9a-f]{40}$")
# an index outloop reads by hand: a shared part of a few million entries
_INDEX_LIMIT = 1 << 30


def shared_indexes(git_dir: Path) -> set[str]:
    """The names of the split index's shared files at the top of ``git_dir`` (plain files)."""
    try:
        with os.scandir(git_dir) as entries:
            return {
                entry.name
                for entry in entries
                if _SHARED_INDEX_RE.match(entry.name) and entry.is_file(follow_symlinks=False)
            }
    except OSError:
        return set()


def named_shared_index(git_dir: Path) -> str | None:
    """The shared part ``git_dir``'s index names (its ``link`` extension), when it is there."""
    found = _split_index(git_dir)
    return found[0] if found is not None else None


def split_index_entries(git_dir: Path) -> tuple[int, int] | None:
    """(entries in the index proper, entries in its shared part), from the two headers.

    None when the index is not split (or names no shared file that is there).
    """
    found = _split_index(git_dir)
    if found is None:
        return None
    name, own = found
    header = _read_header(git_dir / name)
    if header is None or header[:4] != b"DIRC":
        return None
    return own, int.from_bytes(header[8:12], "big")


def _split_index(git_dir: Path) -> tuple[str, int] | None:
    """(the shared part the index names, the entries of the index proper), read once.

    The ``link`` extension (its name, its size, the shared file's hash) follows
    the entries; a path in an entry cannot pass for it, since the hash after it
    must name a shared file that is there. The index proper is read whole: it
    holds the entries that changed since the last split, kilobytes.
    """
    names = shared_indexes(git_dir)
    if not names:
        return None
    data = _read_regular(git_dir / "index", limit=_INDEX_LIMIT)
    if data is None or data[:4] != b"DIRC":
        return None
    at = data.rfind(b"link", 12, len(data) - 20)
    while at != -1:
        name = f"sharedindex.{data[at + 8 : at + 28].hex()}"
        if name in names:
            return name, int.from_bytes(data[8:12], "big")
        at = data.rfind(b"link", 12, at)
    return None


def _read_header(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, 12)
    finally:
        os.close(fd)


def sync_shared_indexes(source: Path, target: Path) -> None:
    """Give ``target`` the shared part ``source``'s index names, and no other (copies, never links).

    outloop's own index is split (``core.splitIndex``: each write of it is the
    few entries that changed, not all of them; 100k files make the whole index
    megabytes), and a copy of it is only readable beside the shared file it
    names. A shared file is written once under its hash: one already there by
    that name and of that size is left; otherwise it is written to a new file
    and renamed into place, so a copy cut short is never taken for whole.
    Shared parts ``source`` keeps but its index no longer names stay there
    (git expires them; a crash between git's two renames must find the old
    one), and go from ``target``.
    """
    wanted = named_shared_index(source)
    if wanted is not None:
        copy = target / wanted
        size = (source / wanted).stat().st_size
        try:
            info = copy.lstat()
            whole = stat.S_ISREG(info.st_mode) and info.st_size == size
        except FileNotFoundError:
            whole = False
        if not whole:
            if copy.is_dir() and not copy.is_symlink():
                remove_tree(copy)
            data = _read_regular(source / wanted, limit=_INDEX_LIMIT)
            if data is None or len(data) != size:
                raise UnsafeGitDir(("copy", wanted), f"{source / wanted} could not be read whole")
            atomic_write_bytes(copy, data, durable=False, mode=0o644)
    try:
        with os.scandir(target) as entries:
            stale = [
                entry.name
                for entry in entries
                if _SHARED_INDEX_RE.match(entry.name) and entry.name != wanted
            ]
    except OSError:
        return
    for name in stale:
        path = target / name
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)


def move_own_branch(
    dirs: RunGitDirs, branch: str, new: str, old: str, *, who: tuple[str, str], message: str
) -> bool:
    """``git update-ref -m MESSAGE refs/heads/BRANCH NEW OLD`` in outloop's git dir, by hand.

    The ref files of outloop's own git dir are outloop's alone (no sandbox
    shows them writable), and git's ``files`` format for one loose ref is a
    lock, a check, a rename: done here it saves the iteration a git process.
    As git does, the lock (``BRANCH.lock``, created exclusively) is taken
    first, the ref must still say ``old`` (another writer, or a ref moved
    behind outloop's back, fails the move), and ``new`` replaces it by a
    rename, so a reader sees one value or the other; the reflog gets its line.
    False, with nothing changed, when the ref is not a plain loose file (packed,
    say): then git moves it.
    """
    if not (_SHA_RE.match(new) and _SHA_RE.match(old)):
        raise ValueError(f"not full commit ids: {new!r}, {old!r}")
    rel = f"refs/heads/{branch}"
    ref = dirs.own / rel
    lock = ref.with_name(ref.name + ".lock")
    if _read_regular(ref) is None:
        return False
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise GitError(
            ("update-ref", rel),
            f"Unable to create '{lock}': File exists.",
            hint="another git process may be running in the run's git dir; if not, remove "
            "the lock file and resume the run",
        ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            current = (_read_regular(ref) or b"").decode(errors="replace").strip()
            if current != old:
                raise GitError(
                    ("update-ref", rel),
                    f"cannot lock ref '{rel}': is at {current or 'nothing'} but expected {old}",
                )
            out.write(f"{new}\n".encode())
        if not move_file(lock, ref):
            raise GitError(("update-ref", rel), f"{lock} went away before it was renamed")
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    _append_reflog(dirs.own / "logs" / rel, old, new, who, message)
    # as git does for the branch HEAD points at: HEAD's log too
    if _read_regular(dirs.own / "HEAD") == f"ref: {rel}\n".encode():
        _append_reflog(dirs.own / "logs" / "HEAD", old, new, who, message)
    return True


def _append_reflog(log: Path, old: str, new: str, who: tuple[str, str], message: str) -> None:
    """One reflog line, as git writes it.

    A reflog that cannot be written is left as it is: the ref has moved, and
    outloop reads neither log (git itself does not create a missing one for a
    ref outside refs/heads either).
    """
    name, email = (_ident_part(part) for part in who)
    offset = time.strftime("%z")
    line = f"{old} {new} {name} <{email}> {int(time.time())} {offset}\t{_ident_part(message)}\n"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "ab") as out:
            out.write(line.encode())
    except OSError:
        return


def _ident_part(text: str) -> str:
    # git drops what would break a reflog line or an identity apart
    return "".join(ch for ch in text if ch not in "<>\n\r\t").strip()


def agent_head(dirs: RunGitDirs, branch: str) -> str | None:
    """Where the agent's branch points (read by hand), or None when it is not on it."""
    head = _read_regular(dirs.agent / "HEAD")
    if head is None or head.strip() != f"ref: refs/heads/{branch}".encode():
        return None
    ref = f"refs/heads/{branch}"
    loose = _read_regular(dirs.agent / ref)
    if loose is not None:
        sha = loose.decode(errors="replace").strip()
        return sha if _SHA_RE.match(sha) else None
    packed = _read_regular(dirs.agent / "packed-refs") or b""
    for line in packed.decode(errors="replace").splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA_RE.match(sha):
            return sha
    return None


def agent_objects_env(dirs: RunGitDirs) -> dict[str, str] | None:
    """Env that lets outloop's git read (never write) the agent's objects; None if unsafe.

    Only an object store of plain files and directories, borrowing from
    nothing but the two stores outloop gave it: a FIFO or a device where git
    expects an object would hang or mislead outloop's git, and an alternate of
    the agent's choosing would bring in objects from anywhere.
    """
    objects = dirs.agent / "objects"
    if objects.is_symlink() or not objects.is_dir():
        return None
    for root, subdirs, files in os.walk(objects):
        for name in [*subdirs, *files]:
            mode = (Path(root) / name).lstat().st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                return None
    wanted = {str(p.resolve()) for p in _own_alternates(dirs)} | {
        str((dirs.own / "objects").resolve())
    }
    listed = _read_regular(objects / "info" / "alternates")
    if listed is not None:
        lines = {line.strip() for line in listed.decode(errors="replace").splitlines()}
        if not lines <= wanted | {""}:
            return None
    return {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects)}


def _own_alternates(dirs: RunGitDirs) -> list[Path]:
    listed = _read_regular(dirs.own / "objects" / "info" / "alternates") or b""
    return [Path(line) for line in listed.decode(errors="replace").splitlines() if line.strip()]


def _read_regular(path: Path, *, limit: int = 1 << 20) -> bytes | None:
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write_new(root: Path, rel: str, data: bytes = b"", *, source: Path | None = None) -> None:
    """Write ``root/rel`` afresh (``data``, or a copy of ``source``); every directory on the
    way must be a real one."""
    here = root
    parts = rel.split("/")
    for part in parts[:-1]:
        here = here / part
        try:
            info = here.lstat()
        except FileNotFoundError:
            here.mkdir()
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeGitDir(("write", rel), f"{here} in the agent's git dir is not a directory")
    target = here / parts[-1]
    if target.is_dir() and not target.is_symlink():
        remove_tree(target)
    target.unlink(missing_ok=True)
    _create(target, data, source=source)


def _create(path: Path, data: bytes, *, source: Path | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        if source is None:
            out.write(data)
            return
        # the index is megabytes on a large repository: copied by the kernel, not
        # through Python's memory
        with source.open("rb") as src:
            size = os.fstat(src.fileno()).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(out.fileno(), src.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
