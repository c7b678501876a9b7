"""How outloop runs git: hardened flags, an allow-listed environment, errors as ``GitError``.

Every git command line outloop builds goes through ``Git.run``; the modules of
this package are the only ones that call it (a test keeps that true).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from outloop_cli.errors import GitError
from outloop_cli.process.spawn import CommandTimedOut, ProgramNotFound, run_captured

# Variables that would point git somewhere other than the directory we name
# (set when outloop is started from a git hook, for instance).
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


# What outloop's own git commands may see of its environment. Anything else
# (an API token in the parent shell, say) stays out of reach of a hook or
# filter an agent might have planted in the repository's config.
_GIT_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "EMAIL",
        "SSH_AUTH_SOCK",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
    }
)
_GIT_ENV_PREFIXES = ("LC_", "GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_CONFIG_", "GIT_TRACE")

# Config an agent could set to make outloop's next git command run a program:
# neutralised on every command outloop runs (filters cannot be, so the config
# files themselves are guarded: see ConfigGuard).
_HARDENING = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "core.pager=cat",
)


# On a run's own git dirs, also: no system or global config (the only config is the
# git dir's own, which outloop wrote), no attributes file, no automatic gc, no
# submodule recursion (a `.git` planted in a submodule directory of the work tree
# would otherwise be asked for its status with its own config), and the untracked
# cache kept for `--untracked-files=all`, the mode outloop asks for: git keeps it
# for that mode only when status.showUntrackedFiles says all, and without it every
# status reads every directory of the work tree again (10k files: 4.7 of 14 ms)
_ISOLATION = (
    "-c",
    "core.attributesFile=/dev/null",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "diff.ignoreSubmodules=all",
    "-c",
    "submodule.recurse=false",
    "-c",
    "status.submoduleSummary=false",
    "-c",
    "core.untrackedCache=true",
    "-c",
    "status.showUntrackedFiles=all",
    # each write of the run's index is what changed, not every entry again (add and
    # write-tree each wrote all 10k entries: 9 ms of an iteration; see rundirs.shared_indexes)
    "-c",
    "core.splitIndex=true",
)
_ISOLATED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git_env(extra: Mapping[str, str] | None = None, *, isolated: bool = False) -> dict[str, str]:
    # names first, values only of the few kept: os.environ decodes each one it hands out,
    # and the runner builds this before every git command
    environ = os.environ
    env = {
        k: environ[k]
        for k in environ
        if (k in _GIT_ENV_NAMES or k.startswith(_GIT_ENV_PREFIXES))
        and k not in _GIT_LOCATION_VARS
        # config from the parent environment is the user's; a run's own git takes none
        and not (isolated and k.startswith("GIT_CONFIG"))
    }
    if isolated:
        env.update(_ISOLATED_ENV)
    # never block on a prompt: outloop runs unattended
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra or {})
    return env


class Git:
    """Runs git in one directory and turns failures into ``GitError``.

    Plain git CLI through the process seam rather than GitPython: we need
    exact control of the environment (GitPython always merges ``os.environ``,
    so a ``GIT_DIR`` inherited from a hook would redirect it), every command
    we use is plumbing with machine-readable output, and it keeps GitPython's
    ~100 ms import off the start-up path.
    """

    def __init__(
        self,
        cwd: Path,
        *,
        git_dir: Path | None = None,
        work_tree: Path | None = None,
        objects: tuple[Path, Path] | None = None,
    ) -> None:
        """``git_dir`` (and ``work_tree``): address them explicitly, with isolated config.

        Without them git finds the repository from ``cwd`` (the user's own
        checkout). With them it never looks for a ``.git`` in ``cwd``: a run's
        git dirs are named on every command from outloop's own records, so a
        gitfile an agent rewrote cannot redirect it.

        ``objects`` (primary, borrowed) writes new objects into ``primary`` and
        reads ``borrowed`` too: a run writes its objects straight into the
        user's object store, so importing a commit is an update of a ref.
        """
        self.cwd = cwd
        self.git_dir = git_dir
        self.work_tree = work_tree
        self._objects_env: dict[str, str] = {}
        if objects is not None:
            self._objects_env = {
                "GIT_OBJECT_DIRECTORY": str(objects[0]),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects[1]),
            }

    def run(
        self,
        *args: str,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        strip: bool = True,
        ok_codes: Sequence[int] = (0,),
        timeout: float | None = None,
    ) -> str:
        isolated = self.git_dir is not None
        extra = dict(env or {})
        for name, value in self._objects_env.items():
            if name in extra and name == "GIT_ALTERNATE_OBJECT_DIRECTORIES":
                # a caller's borrowed store (the agent's objects) comes on top of ours
                extra[name] = f"{value}{os.pathsep}{extra[name]}"
            else:
                extra.setdefault(name, value)
        full_env = git_env(extra, isolated=isolated)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        where: list[str] = []
        if self.git_dir is not None:
            where += [f"--git-dir={self.git_dir}", *_ISOLATION]
            if self.work_tree is not None:
                where.append(f"--work-tree={self.work_tree}")
        try:
            done = run_captured(
                ["git", *where, *_HARDENING, *args],
                cwd=self.cwd,
                env=full_env,
                stdin_data=data,
                timeout=timeout,
            )
        except CommandTimedOut:
            raise GitError(args, f"no answer within {timeout:g} s; killed") from None
        except ProgramNotFound:
            raise GitError(
                args, "git not found", hint="install git and make sure it is on PATH"
            ) from None
        if done.returncode not in ok_codes:
            raise GitError(args, done.stderr.decode(errors="replace"))
        out = done.stdout.decode(errors="surrogateescape")
        return out.rstrip("\n") if strip else out
