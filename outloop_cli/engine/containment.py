"""One view for everything that runs code the agent wrote: its turn and the goal alike.

The goal command imports and executes files the agent wrote (``pytest`` loads
``conftest.py``, ``npm test`` runs ``package.json`` scripts), so it gets the
same sandbox as the agent's turn: the same hidden home and state directories,
the same read-only control files of the repository, the worktree writable.
Only what each needs on top differs: the agent's private state directory, the
broker's socket and the access proxy for the turn, nothing for the goal (it
holds no capability, and has no network).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from outloop_cli.git.alternates import parse_alternates
from outloop_cli.process.environment import build_env

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.sandbox.bwrap import GitMounts, ProgramRoots, RealPaths
    from outloop_cli.sandbox.ports import SandboxServer

_T = TypeVar("_T")


def contained(
    ctx: RunContext,
    argv: Sequence[str],
    *,
    writable: Sequence[Path] = (),
    readable: Sequence[Path] = (),
    shell_command: str | None = None,
    proxy: SandboxServer | None = None,
) -> list[str]:
    """``argv`` as the run's sandbox runs it (unchanged when the run has no sandbox).

    ``shell_command`` is the script of an ``sh -c`` argv: the programs it names
    come into view (read-only). ``readable`` files are shown read-only (the
    prompt file), ``writable`` directories read-write. ``proxy`` answers
    127.0.0.1:port inside; so does the run's egress proxy, when its loop may
    reach hosts: the only ways out of the sandbox's own network. Each gets a
    handoff socket for this start alone (``sandbox/handoff.py``): build the
    command line right before it runs.
    """
    if not sandboxed(ctx):
        return list(argv)
    from outloop_cli import paths
    from outloop_cli.sandbox import bwrap as sandbox

    path_env = build_env().get("PATH")
    repo = ctx.plan.repo.info
    extra = ctx.plan.extra_paths
    return sandbox.wrap(
        argv,
        bwrap=bwrap_program(ctx, path_env),
        path_env=path_env,
        worktree=ctx.worktree.path,
        git=git_mounts(ctx),
        writable=writable,
        readable=readable,
        extra_read=extra.read,
        extra_write=extra.write,
        home=Path.home(),
        # no program's install root may bring these back into view
        protected=[
            paths.state_home(),
            paths.config_home(),
            paths.data_home(),
            repo.root,
            repo.common_dir,
        ],
        shell_command=shell_command,
        relays=[
            server.for_one_start() for server in (proxy, ctx.egress.relay()) if server is not None
        ],
        etc=etc_view(ctx),
        roots=program_roots(ctx),
        real=real_paths(ctx),
    )


# what stays the same between the sandboxes of one run, per run and per process (a
# resumed run finds it anew): (run directory, what) -> the answer
_PER_RUN: dict[tuple[Path, str], Any] = {}


def forget_run(ctx: RunContext) -> None:
    """The run is over in this process: its memos go (a long-lived process runs many)."""
    for key in [key for key in _PER_RUN if key[0] == ctx.paths.root]:
        del _PER_RUN[key]


def _per_run(ctx: RunContext, what: str, make: Callable[[], _T]) -> _T:
    key = (ctx.paths.root, what)
    if key not in _PER_RUN:
        _PER_RUN[key] = make()
    return cast(_T, _PER_RUN[key])


def etc_view(ctx: RunContext) -> Path:
    """The allowed ``/etc`` entries, copied once into the run's directory (see ``etc_view``)."""
    from outloop_cli.sandbox import bwrap as sandbox

    return _per_run(ctx, "etc", lambda: sandbox.etc_view(ctx.paths.root / "sandbox-etc"))


def program_roots(ctx: RunContext) -> ProgramRoots:
    """The run's memo of its commands' program roots (see ``ProgramRoots``)."""
    from outloop_cli.sandbox.bwrap import ProgramRoots

    return _per_run(ctx, "program roots", ProgramRoots)


def real_paths(ctx: RunContext) -> RealPaths:
    """The run's memo of the real paths its sandboxes bind (see ``RealPaths``)."""
    from outloop_cli.sandbox.bwrap import RealPaths

    return _per_run(ctx, "real paths", RealPaths)


def bwrap_program(ctx: RunContext, path_env: str | None) -> str:
    """bubblewrap as the run first found it on ``path_env``, while it is still there.

    Looked up once per run instead of before every sandbox: the PATH search
    was a third of a command line's cost. Found again only if it went away.
    """
    from outloop_cli.sandbox import bwrap as sandbox

    pinned: dict[str | None, str] = _per_run(ctx, "bwrap", dict)
    found = pinned.get(path_env)
    if found is None or not os.access(found, os.X_OK):
        found = pinned[path_env] = sandbox.bwrap_program(path_env)
    return found


def git_mounts(ctx: RunContext) -> GitMounts:
    """The user's objects and outloop's read-only, the agent's private git dir writable."""
    from outloop_cli.sandbox.bwrap import GitMounts

    user_objects = ctx.plan.repo.info.common_dir / "objects"
    stores = [user_objects, ctx.worktree.dirs.own / "objects"]
    # stores the user's repository borrows from itself (its own alternates)
    try:
        stores += parse_alternates(
            (user_objects / "info" / "alternates").read_bytes(), user_objects
        )
    except OSError:
        pass
    return GitMounts(read_only=tuple(stores), writable=ctx.worktree.dirs.agent)


def sandboxed(ctx: RunContext) -> bool:
    """Whether the run's agent and goal run in the sandbox (``sandbox.py`` decided at plan)."""
    return ctx.plan.sandbox.active


def contained_view(
    ctx: RunContext,
    argv: Sequence[str],
    view: Path,
    *,
    writable: Sequence[Path] = (),
    proxy: SandboxServer | None = None,
) -> list[str]:
    """``argv`` in the run's sandbox with ``view`` (a checkout of a commit) read-only.

    For the judge: no git dir, no worktree, none of the loop's extra paths, no
    egress; only its own state directories are writable, and the access proxy
    is its one way out.
    """
    if not sandboxed(ctx):
        return list(argv)
    from outloop_cli import paths
    from outloop_cli.sandbox import bwrap as sandbox

    path_env = build_env().get("PATH")
    repo = ctx.plan.repo.info
    return sandbox.wrap(
        argv,
        bwrap=bwrap_program(ctx, path_env),
        path_env=path_env,
        worktree=view,
        read_only_worktree=True,
        git=sandbox.GitMounts(read_only=(), writable=None),
        writable=writable,
        home=Path.home(),
        protected=[
            paths.state_home(),
            paths.config_home(),
            paths.data_home(),
            repo.root,
            repo.common_dir,
            ctx.worktree.path,
        ],
        relays=[proxy.for_one_start()] if proxy is not None else [],
        etc=etc_view(ctx),
        roots=program_roots(ctx),
        real=real_paths(ctx),
    )
