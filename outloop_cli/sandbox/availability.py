"""Whether bubblewrap can run here, asked once per process, and what a loop then gets.

``sandbox: auto`` (the default) means bubblewrap wherever it is installed and
the kernel lets it make user namespaces; anywhere else the run goes on without
it, and says so on the terminal, in ``run.json``, the summary and the audit log.
``sandbox: bwrap`` requires it: the run does not start (exit 3) and the message
says what to install or enable. ``sandbox: none`` is the user's explicit choice,
recorded as such.

The probe starts one tiny sandbox of the same kind as a run's (own user, PID and
network namespaces, capabilities dropped) running ``true``: a few milliseconds,
and cached, so a run of many loops asks once.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.spawn import run_captured
from outloop_cli.sandbox.bwrap import probe_argv

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap; Alpine: apk add bubblewrap)"
)
USERNS_HINT = (
    "let unprivileged users create user namespaces: `sysctl kernel.unprivileged_userns_clone=1` "
    "(Debian), `sysctl kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile "
    "for bwrap (Ubuntu 24.04+), `user.max_user_namespaces` > 0; in a container, allow the "
    "unshare and clone system calls (e.g. docker --security-opt seccomp=unconfined)"
)


@dataclass(frozen=True)
class Availability:
    """Whether bubblewrap can run here, and if not, why and what would fix it."""

    bwrap: str | None
    # why bubblewrap cannot run here (None: it can), and what would fix it
    problem: str | None = None
    hint: str | None = None

    @property
    def works(self) -> bool:
        return self.bwrap is not None and self.problem is None


@dataclass(frozen=True)
class SandboxChoice:
    """What a run gets: the mode asked for, whether it is contained, and why not."""

    requested: str
    active: bool
    # set when `auto` goes on without a sandbox: said everywhere the run is reported
    warning: str | None = None

    def record(self) -> dict[str, object]:
        return {"requested": self.requested, "active": self.active, "warning": self.warning}


def availability(path_env: str | None) -> Availability:
    found = shutil.which("bwrap", path=path_env)
    if found is None:
        return Availability(None, "bubblewrap is not installed", INSTALL_HINT)
    return _probe(found)


@functools.cache
def _probe(bwrap: str) -> Availability:
    argv = probe_argv(bwrap)
    try:
        done = run_captured(argv, cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, timeout=20)
    except CouldNotRun as exc:
        return Availability(bwrap, f"bubblewrap could not start: {exc.message}", INSTALL_HINT)
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = said[-1] if said else f"exit {done.returncode}"
        return Availability(
            bwrap, f"bubblewrap cannot make its namespaces here ({reason})", USERNS_HINT
        )
    return Availability(bwrap)


def choose(mode: str, path_env: str | None) -> SandboxChoice:
    """The sandbox a run of a loop with ``sandbox: mode`` gets; raises for `bwrap` that cannot."""
    if mode == "none":
        return SandboxChoice("none", active=False)
    found = availability(path_env)
    if found.works:
        return SandboxChoice(mode, active=True)
    assert found.problem is not None
    if mode == "bwrap":
        raise CouldNotRun(
            f"`sandbox: bwrap` needs bubblewrap, and {found.problem}",
            hint=f"{found.hint}; or set `sandbox: none` in the loop file to run without it",
        )
    return SandboxChoice(
        mode,
        active=False,
        warning=f"running WITHOUT a sandbox: {found.problem}. The agent and the goal can read "
        f"and change everything your user can; to contain them, {found.hint}",
    )
