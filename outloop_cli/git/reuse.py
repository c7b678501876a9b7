"""A finished run's work tree, moved to a new run's base instead of checking out afresh.

On a big repository the checkout is most of a run's start: every file
written. A finished run's work tree already holds nearly the same files, so
a new run may take it over and have git touch only the files that differ
between the two commits (a two-tree ``read-tree -m -u``, what ``git
checkout`` does), keeping the stat cache of all the others.

Taken over only when that is provably safe, else :func:`unsafe_reason`
says why and the caller checks out afresh:

* the work tree is the old run's (its ``.git`` file names the old run's git
  dir), a real directory, and no git command holds its index;
* outloop's git dir of the old run looks exactly like a fresh one (same
  config file byte for byte, no ``info/`` with excludes or a sparse
  pattern; the shared part of its split index, outloop's own, is all it may
  have beyond that), so nothing there hides a file from git;
* its HEAD is the old run's branch and the user's repository has that
  branch's last commit (so every commit is where the user finds it, and its
  objects are reachable from the new run's git dir);
* its index has no flags that make git look away (assume-unchanged,
  skip-worktree), no conflict stages and no submodules, and ``git status``
  finds nothing uncommitted and nothing untracked: only ignored files
  (build outputs, caches) are left, and those go;
* the two commits do not differ in a ``.gitattributes`` file (a changed
  attribute would check unchanged files out differently).

The move itself (:func:`move_work_tree`): the old index (and its split
index's shared part) is copied into the new run's git dir (the index with
its mtime, which git's racy-clean check relies on), the directory is
renamed to the new run's path (whoever renames first has it), ``git clean
-ffdx`` removes every ignored and untracked file, the two-tree checkout
brings it to the new base, and a last ``git status --ignored`` proves
nothing differs from the base. The old run keeps its git dirs, branch and
records; resuming it checks its branch out afresh.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun, GitError
from outloop_cli.git import rundirs
from outloop_cli.git.cli import Git
from outloop_cli.git.rundirs import RunGitDirs, remove_tree
from outloop_cli.process.proc import umask
from outloop_cli.process.spawn import run_captured
from outloop_cli.store.atomic import move_file

# what a fresh git dir of a run holds at its top (rundirs._init, then git's own work)
_EXPECTED_TOP = frozenset(
    {"HEAD", "config", "description", "index", "objects", "refs", "logs", "packed-refs"}
)
_GITLINK = "160000"


@dataclass(frozen=True)
class Moved:
    """A work tree taken over: from which commit, and how many paths the checkout touched."""

    old_head: str
    changed: int


def unsafe_reason(
    old: RunGitDirs,
    old_branch: str,
    user_head: str | None,
    fresh_own: Path,
    base: str,
    finished_at: float,
) -> str | None:
    """Why the old run's work tree must not be taken over for ``base``; None when it may be.

    ``user_head`` is where the user's repository has the old run's branch;
    ``fresh_own`` is the new run's git dir, just made, to compare with;
    ``finished_at`` is when the old run ended: an ignored file changed after
    that is someone else's (a ``.env`` the user copied in), never the run's
    leftover, and is not deleted.
    """
    tree = old.work_tree
    try:
        info = tree.lstat()
    except OSError:
        return "its worktree is gone"
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return "its worktree is not a directory of this user's"
    if not rundirs.owns_work_tree(old):
        return "its worktree's .git file does not name its git dir"
    if (old.own / "index.lock").exists():
        return "a git command holds its index (index.lock)"
    problem = _git_dir_differs(old.own, fresh_own)
    if problem is not None:
        return problem
    head = _read_small(old.own / "HEAD")
    if head != f"ref: refs/heads/{old_branch}\n":
        return "its git dir is not on its branch"
    git = old.git()
    try:
        old_head = git.run(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{old_branch}^{{commit}}"
        )
    except GitError:
        return "its branch cannot be read"
    if user_head is None:
        return "its branch is not in the repository"
    if user_head != old_head and not _is_ancestor(git, old_head, user_head):
        return "its last commit was never imported into the repository"
    try:
        if attributes_changed(changed_paths(git, old_head, base)):
            return "a .gitattributes file differs between its last commit and the base"
    except GitError:
        return "its last commit and the base cannot be compared"
    flagged = _index_problem(git)
    if flagged is not None:
        return flagged
    # one status for both questions (a work tree scan each was a tenth of a second at
    # 100k files): anything but an ignored path is uncommitted or untracked work. It
    # must not write the old run's index (--no-optional-locks): a status in this mode
    # stores an untracked cache that a later `--untracked-files=all` status (`outloop
    # clean`, the next look at this worktree) trusts, and then misses untracked files
    try:
        listing = git.run(
            "--no-optional-locks",
            "status",
            "--porcelain=v1",
            "-z",
            "--ignored=traditional",
            "--untracked-files=normal",
            "--no-renames",
            "--ignore-submodules=none",
            strip=False,
        )
    except GitError:
        return "git status failed in its worktree"
    entries = [entry for entry in listing.split("\0") if entry]
    dirty = sum(1 for entry in entries if not entry.startswith("!! "))
    if dirty:
        return f"its worktree has {dirty} uncommitted or untracked path(s)"
    return _ignored_since(entries, tree, finished_at)


def _ignored_since(entries: list[str], tree: Path, finished_at: float) -> str | None:
    """An ignored path (a wholly ignored directory counts as one) changed after the run ended."""
    for entry in entries:
        if not entry.startswith("!! "):
            continue
        try:
            changed = (tree / entry[3:]).lstat().st_mtime
        except OSError:
            continue
        # run records keep whole seconds
        if changed > finished_at + 1:
            return f"{entry[3:]} (ignored) changed after the run finished"
    return None


def changed_paths(git: Git, old_head: str, base: str) -> list[str]:
    """The paths whose content differs between two commits."""
    out = git.run(
        "diff-tree", "-r", "-z", "--name-only", "--no-renames", old_head, base, strip=False
    )
    return [p for p in out.split("\0") if p]


def attributes_changed(paths: list[str]) -> bool:
    return any(p == ".gitattributes" or p.endswith("/.gitattributes") for p in paths)


def move_work_tree(old: RunGitDirs, new: RunGitDirs, old_branch: str, base: str) -> Moved | None:
    """Take the old work tree over for ``new`` (made by ``rundirs.prepare``) at ``base``.

    None when another process renamed it first. A failure after the rename
    removes the half-moved tree and raises: the caller checks out afresh.
    """
    old_head = old.git().run("rev-parse", "--verify", f"refs/heads/{old_branch}^{{commit}}")
    index = old.own / "index"
    # the split index's shared part, which the index names, before the index itself
    rundirs.sync_shared_indexes(old.own, new.own)
    # copy2: the index's mtime is what git's racy-clean check compares file times with
    shutil.copy2(index, new.own / "index")
    if not move_file(old.work_tree, new.work_tree):
        _remove_index(new.own)
        return None
    git = new.git()
    try:
        # every ignored and untracked file the old run left; the .git file git leaves alone
        git.run("clean", "-ffdxq")
        changed = changed_paths(git, old_head, base)
        # the two-tree form checks the index against old_head and writes only what differs
        git.run("read-tree", "-m", "-u", old_head, base)
        # the untracked cache names the work tree's path: this resets it for the new one
        git.run("update-index", "--untracked-cache", "--index-version", "4", ok_codes=(0, 1, 128))
        from concurrent.futures import ThreadPoolExecutor

        # two scans of the whole tree that change nothing: side by side (at 100k files
        # each is a sixth of a second; the runner is otherwise idle while git works)
        with ThreadPoolExecutor(max_workers=1) as pool:
            modes = pool.submit(unlike_fresh_checkout, new.work_tree)
            left = git.run(
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--ignored=matching",
                "--no-renames",
                "--ignore-submodules=none",
                strip=False,
            )
            odd = modes.result()
        if left:
            raise GitError(("status",), f"the moved worktree differs from the base: {left[:200]!r}")
        if odd is not None:
            raise GitError(("checkout",), f"the moved worktree is not like a fresh checkout: {odd}")
    except BaseException:
        remove_tree(new.work_tree)
        _remove_index(new.own)
        raise
    return Moved(old_head=old_head, changed=len(changed))


def _remove_index(own: Path) -> None:
    """The copied index and its shared part: the new git dir as :func:`rundirs.prepare` left it."""
    (own / "index").unlink(missing_ok=True)
    for name in rundirs.shared_indexes(own):
        (own / name).unlink(missing_ok=True)


def unlike_fresh_checkout(root: Path) -> str | None:
    """What in ``root`` a fresh checkout would not have, beyond git's view; None if nothing.

    git compares contents and the executable bit only. A fresh checkout also
    has every file and directory owned by us with the modes the umask gives,
    and no file linked to another name: a hard link left to a file outside
    the worktree would let the next agent write there through it.

    ``find`` looks at every entry (one ``lstat`` each, in C: 0.17 s for 100k
    files where the same walk in Python took 0.45 s, most of a reused run's
    start) and names the first odd one, which the Python judgement then
    words; wherever ``find`` cannot answer for sure (not installed, an
    unreadable directory, any error) the Python walk decides.
    """
    mask = umask()
    if mask is None:
        return "the umask cannot be read here"
    me = os.geteuid()
    file_modes = {0o666 & ~mask, 0o777 & ~mask}
    dir_mode = 0o777 & ~mask
    found = _first_odd_by_find(root, me, file_modes, dir_mode)
    if found is None:
        return None
    if isinstance(found, Path):
        reason = _odd_entry(found, me, file_modes, dir_mode)
        if reason is not None:
            return reason
    return _first_odd_by_walk(root, me, file_modes, dir_mode)


# find could not answer: the walk decides
_UNSURE = object()


def _first_odd_by_find(
    root: Path, me: int, file_modes: set[int], dir_mode: int
) -> Path | object | None:
    """The first entry ``find`` finds odd (as :func:`_odd_entry` judges), None, or ``_UNSURE``."""
    # one mode or two: a umask such as 177 gives 666 and 777 alike as 600
    file_perms = [arg for mode in sorted(file_modes) for arg in ("!", "-perm", f"{mode:o}")]
    # run in the root ("." everywhere): no path of ours is ever read as a pattern
    argv = [
        "find", ".", "-mindepth", "1",
        "-path", "./.git", "-prune", "-o",
        "(",
        "!", "-uid", str(me),
        "-o", "!", "-type", "f", "!", "-type", "d", "!", "-type", "l",
        "-o", "-type", "d", "!", "-perm", f"{dir_mode:o}",
        "-o", "-type", "f", "(", "-links", "+1", "-o", *file_perms, ")",
        ")",
        "-print0", "-quit",
    ]  # fmt: skip
    try:
        done = run_captured(argv, cwd=root, env={"PATH": os.defpath, "LC_ALL": "C"})
    except (CouldNotRun, OSError):
        return _UNSURE
    if done.returncode != 0 or done.stderr:
        return _UNSURE
    if not done.stdout:
        return None
    name = done.stdout.split(b"\0", 1)[0]
    if not name.startswith(b"./"):
        return _UNSURE
    return root / os.fsdecode(name[2:])


def _first_odd_by_walk(root: Path, me: int, file_modes: set[int], dir_mode: int) -> str | None:
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as exc:
            return f"{here} cannot be read ({exc.strerror})"
        for entry in entries:
            if here == root and entry.name == ".git":
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                return f"{entry.path} cannot be read ({exc.strerror})"
            reason = _odd(entry.path, info, me, file_modes, dir_mode)
            if reason is not None:
                return reason
            if stat.S_ISDIR(info.st_mode):
                stack.append(Path(entry.path))
    return None


def _odd_entry(path: Path, me: int, file_modes: set[int], dir_mode: int) -> str | None:
    try:
        info = path.lstat()
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror})"
    return _odd(str(path), info, me, file_modes, dir_mode)


def _odd(
    path: str, info: os.stat_result, me: int, file_modes: set[int], dir_mode: int
) -> str | None:
    """Why one entry is unlike a fresh checkout's, or None."""
    kind = stat.S_IFMT(info.st_mode)
    if info.st_uid != me:
        return f"{path} is not ours"
    if kind == stat.S_IFDIR:
        if stat.S_IMODE(info.st_mode) != dir_mode:
            return f"{path} has mode {stat.S_IMODE(info.st_mode):o}"
    elif kind == stat.S_IFREG:
        if info.st_nlink != 1:
            return f"{path} has {info.st_nlink} hard links"
        if stat.S_IMODE(info.st_mode) not in file_modes:
            return f"{path} has mode {stat.S_IMODE(info.st_mode):o}"
    elif kind != stat.S_IFLNK:
        return f"{path} is neither a file, a directory nor a link"
    return None


def _git_dir_differs(old_own: Path, fresh_own: Path) -> str | None:
    """What in the old run's git dir a fresh one would not have, or None."""
    try:
        names = {entry.name for entry in os.scandir(old_own)}
    except OSError:
        return "its git dir cannot be read"
    # a split index's shared part is outloop's own doing (core.splitIndex), moved along
    extra = sorted(names - _EXPECTED_TOP - rundirs.shared_indexes(old_own))
    if extra:
        return f"its git dir has {', '.join(extra)} (a fresh one has not)"
    if _read_small(old_own / "config") != _read_small(fresh_own / "config"):
        return "its git dir's config differs from a fresh one's"
    return None


def _index_problem(git: Git) -> str | None:
    """Index entries git would not check like a fresh checkout's, or None."""
    try:
        listing = git.run("ls-files", "-v", "-s", "-z", strip=False)
    except GitError:
        return "its index cannot be read"
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, _, _path = entry.partition("\t")
        parts = meta.split(" ")
        if len(parts) != 4:
            return "its index cannot be read"
        tag, mode, _sha, stage = parts
        if tag != "H":
            return "its index has entries marked assume-unchanged or skip-worktree"
        if stage != "0":
            return "its index has unresolved conflicts"
        if mode == _GITLINK:
            return "the tree has submodules"
    return None


def _is_ancestor(git: Git, commit: str, of: str) -> bool:
    try:
        git.run("merge-base", "--is-ancestor", commit, of)
    except GitError:
        return False
    return True


def _read_small(path: Path) -> str | None:
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > 1 << 16:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None
