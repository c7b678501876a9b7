"""The loop's own additions to its sandbox's view (``sandbox: {read: […], write: […]}``).

The loop file comes from the repository, so what it may add is bounded: a path
is refused, with its file and line, when it would bring into view

* outloop's state (every run's worktree), config (the policy) or data (the
  secrets index), or the repository's own checkout and git directory;
* a secret store of the user's (``~/.ssh``, ``~/.gnupg``, ``~/.netrc``, the
  keyring files, cloud and registry credentials);
* another repository: a path a workspace of the policy names, a path inside a
  git repository, or one with a repository within three levels below it.

"Bring into view" goes both ways: the path itself, or a directory holding it.
Symlinks are followed first, so ``~/link -> /srv/client-b`` is judged as
``/srv/client-b``. A declared path that does not exist is left out of the view.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.config.model import SandboxConfig, SandboxPath
from outloop_cli.errors import ConfigError, Problem

# under $HOME: where keys, tokens and passwords live
SECRET_STORES = (
    ".ssh",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".docker",
    ".kube",
    ".aws",
    ".azure",
    ".password-store",
    ".config/gh",
    ".config/gcloud",
    ".config/hub",
    ".local/share/keyrings",
    ".local/share/kwalletd",
)
# what outloop itself runs outside every sandbox, found on PATH before each call
OUTSIDE_PROGRAMS = ("bwrap", "git")
_SCAN_DEPTH = 3
_SCAN_LIMIT = 20000


@dataclass(frozen=True)
class ExtraPaths:
    """Checked extra paths, as (what is bound, where it appears)."""

    read: tuple[tuple[Path, Path], ...] = ()
    write: tuple[tuple[Path, Path], ...] = ()


def check_extra_paths(
    config: SandboxConfig,
    *,
    file: str,
    home: Path,
    keep_out: Sequence[tuple[Path, str]],
    keep_unwritable: Sequence[Unwritable] = (),
) -> ExtraPaths:
    """Resolve the declared paths; :class:`ConfigError` naming file and line for any refused.

    ``keep_out`` is (path, what it is) for outloop's own places, the repository
    and the policy's workspaces; the secret stores under ``home`` are added here.
    ``keep_unwritable`` may be shown but never written: where the programs outloop
    runs outside the sandbox come from.
    """
    fences = [*keep_out, *((home / s, "a secret store") for s in SECRET_STORES)]
    fences = [(_resolved(p), what) for p, what in fences]
    unwritable = [Unwritable(_resolved(u.path), u.what, u.children) for u in keep_unwritable]
    problems: list[Problem] = []
    found: dict[str, list[tuple[Path, Path]]] = {"read": [], "write": []}
    for key, declared in (("read", config.read), ("write", config.write)):
        for index, item in enumerate(declared):
            target = _expand(item, home)
            source = _resolved(target)
            problem = _refusal(source, target, fences)
            if problem is None and key == "write":
                problem = _unwritable(source, target, unwritable)
            if problem is not None:
                message, hint = problem
                problems.append(
                    Problem(
                        file,
                        f"sandbox.{key}[{index}]: {item.path!r} {message}",
                        item.line,
                        None,
                        hint,
                    )
                )
            elif source.exists():
                found[key].append((source, target))
    if problems:
        raise ConfigError(problems)
    return ExtraPaths(tuple(found["read"]), tuple(found["write"]))


@dataclass(frozen=True)
class Unwritable:
    """A directory whose files a program outloop runs outside the sandbox may come from."""

    path: Path
    what: str
    # a directory right below it is a fence too: on sys.path, `<entry>/shutil/` is a
    # package that outloop's next `import shutil` would load
    children: bool = False


def outside_program_fences() -> list[Unwritable]:
    """Where the programs outloop runs outside the sandbox come from: never writable inside.

    outloop looks its git and bubblewrap up on PATH before every call, and its own
    Python imports from ``sys.path`` as the run goes on. A declared writable path on
    either would let the agent plant a ``git`` (or a module) that the next call runs
    as the user, outside every sandbox (tests/security/test_planted_programs.py).
    """
    import shutil  # with bz2, lzma and zlib: only when a loop declares paths

    from outloop_cli.process.environment import build_env

    fences: list[Unwritable] = []
    for path_env in dict.fromkeys([os.environ.get("PATH", ""), build_env().get("PATH", "")]):
        for entry in path_env.split(os.pathsep):
            if entry.startswith("/") and entry != "/":
                fences.append(
                    Unwritable(Path(entry), "a directory on PATH, where outloop finds git")
                )
        for program in OUTSIDE_PROGRAMS:
            found = shutil.which(program, path=path_env)
            if found is not None:
                real = Path(os.path.realpath(found)).parent
                fences.append(Unwritable(real, f"the directory of the {program} outloop runs"))
    for entry in sys.path:
        if entry.startswith("/") and entry != "/" and Path(entry).exists():
            fences.append(Unwritable(Path(entry), "outloop's Python (sys.path)", children=True))
    return fences


def _expand(item: SandboxPath, home: Path) -> Path:
    return home / item.path[2:] if item.path.startswith("~/") else Path(item.path)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _refusal(
    source: Path, target: Path, fences: Sequence[tuple[Path, str]]
) -> tuple[str, str] | None:
    for fence, what in fences:
        if _overlap(source, fence) or _overlap(target, fence):
            return (
                f"would show {what} ({fence})",
                "name a directory beside it instead; the sandbox never shows outloop's state, "
                "secret stores or another repository",
            )
    repo = _enclosing_repository(source) or _repository_below(source)
    if repo is not None:
        return (
            f"would show the git repository at {repo}",
            "an agent never sees another repository; install the tool it needs outside any "
            "git checkout and name that directory",
        )
    return None


def _unwritable(source: Path, target: Path, fences: Sequence[Unwritable]) -> tuple[str, str] | None:
    """A fence the declared path would let the agent write in: the fence itself, a directory
    holding it, or (``children``) a directory right below it. Deeper is harmless: a
    program or module planted there is found by no search of outloop's."""
    for fence in fences:
        for path in (source, target):
            if (
                path == fence.path
                or path in fence.path.parents
                or (fence.children and path.parent == fence.path)
            ):
                return (
                    f"would let the agent change {fence.what} ({fence.path}), which runs "
                    "outside the sandbox",
                    "declare a directory that is on neither outloop's PATH nor its Python "
                    "path (read-only under `sandbox.read` is fine); a tool the agent "
                    "installs can go into the worktree or a cache directory of its own",
                )
    return None


def _is_repository(path: Path) -> bool:
    if (path / ".git").exists():
        return True
    # a bare repository, or a git directory itself
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _enclosing_repository(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate != Path("/") and _is_repository(candidate):
            return candidate
    return None


def _repository_below(path: Path) -> Path | None:
    if not path.is_dir():
        return None
    for directory in _walk(path):
        if _is_repository(directory):
            return directory
    return None


def _walk(root: Path) -> Iterator[Path]:
    """Directories below ``root``, breadth first, down to ``_SCAN_DEPTH`` levels (bounded)."""
    level = [root]
    seen = 0
    for _ in range(_SCAN_DEPTH):
        below: list[Path] = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                seen += 1
                if seen > _SCAN_LIMIT:
                    return
                if entry.is_dir(follow_symlinks=False):
                    below.append(Path(entry.path))
                    yield Path(entry.path)
        level = below
