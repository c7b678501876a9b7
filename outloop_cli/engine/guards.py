"""What an agent's turn must not have done, checked before anything of it is committed.

Three checks, in the order the loop runs them: git configuration and hooks
outside the worktree (before any git command runs again), the loop's
protected paths (the change is saved as a patch for a human to look at), and
granted secrets in the changed files. Each returns the :class:`Stop` that
ends the run, after writing its audit event, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from outloop_cli.engine.limits import Stop
from outloop_cli.git.guard import ConfigGuard
from outloop_cli.pathmatch import match_any
from outloop_cli.store.records import StopReason

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.git.worktree import Change


class Guards:
    """The checks of one run; the git config is captured once its worktree exists."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._git_config: ConfigGuard | None = None

    def capture_git_config(self) -> None:
        """Remember the repository's config and hooks as they are before the agent runs."""
        ctx = self._ctx
        self._git_config = ConfigGuard.capture(ctx.worktree, ctx.plan.repo.info.common_dir)

    def git_config(self, n: int) -> Stop | None:
        """Did the agent plant git config or hooks? They are put back before the run stops."""
        if self._git_config is None:
            return None
        changed = self._git_config.changed()
        if not changed:
            return None
        self._git_config.restore()
        shown = [str(p) for p in changed]
        self._ctx.audit("protected_path", iteration=n, paths=shown, kind="git_config")
        return Stop(
            StopReason.PROTECTED_PATH,
            "the agent changed git configuration or hooks outside the worktree ("
            + ", ".join(shown)
            + "); they were put back and nothing of this turn was committed",
        )

    def protected_paths(self, n: int, changes: Sequence[Change]) -> Stop | None:
        """A change to a protected path is not committed; it is saved as a patch instead."""
        ctx = self._ctx
        patterns = ctx.config.protected_patterns()
        touched = [c.path for c in changes if match_any(c.path, patterns)]
        if not touched:
            return None
        worktree = ctx.worktree
        snapshot = worktree.snapshot(changes, max_file_size=ctx.config.commit.max_file_size)
        patch = ctx.paths.logs / f"iter-{n:03d}-protected.patch"
        patch.write_text(worktree.binary_diff(snapshot.parent, snapshot.tree))
        ctx.audit("protected_path", iteration=n, paths=touched[:50])
        return Stop(
            StopReason.PROTECTED_PATH,
            "the agent changed protected path(s): "
            + ", ".join(touched[:10])
            + f"; not committed, the change is saved in {patch}",
        )

    def secrets(self, n: int, paths: Sequence[str]) -> Stop | None:
        """Changes that hold a granted secret (in any encoding) are not committed."""
        ctx = self._ctx
        hits = ctx.plan.access.scan(ctx.worktree.path, paths)
        if not hits:
            return None
        found = [{"path": h.path, "secret": h.name, "form": h.form, "where": h.where} for h in hits]
        ctx.audit("secret_in_diff", iteration=n, hits=found[:50])
        shown = ", ".join(sorted({f"{h.path} ({h.name}, {h.form})" for h in hits})[:10])
        return Stop(
            StopReason.SECRET_IN_DIFF,
            f"the agent's changes contain a secret: {shown}; nothing of this turn was committed",
        )
