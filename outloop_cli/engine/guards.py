"""What an agent's turn must not have done, checked before anything of it is committed.

Four checks, in the order the loop runs them: git configuration and hooks
outside the worktree (before any git command runs again), the loop's
protected paths (the change is saved as a patch for a human to look at),
granted secrets in the changed files, and the commits the agent made itself
(their messages, authors and every file they changed, scanned before they
can become part of the run's branch). Each returns the :class:`Stop` that
ends the run, after writing its audit event, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from outloop_cli.engine.limits import Stop
from outloop_cli.git import trailers
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
        # the agent's last own commit once scanned: the parent of the iteration commit
        self.agent_head: str | None = None

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

    def agent_commits(self, n: int) -> Stop | None:
        """The commits the agent made with its own git: scanned before they may be kept.

        Each commit's raw object (author, committer, message) and every file it
        added or changed are scanned for granted secrets, and its paths are
        held against ``protect:``; only when all pass does the iteration commit
        build on them. A commit that fails is never part of the branch, so it
        is never imported into the user's repository or pushed.
        """
        ctx = self._ctx
        self.agent_head = None
        commits = ctx.worktree.agent_commits()
        if not commits:
            return None
        patterns = ctx.config.protected_patterns()
        max_file_size = ctx.config.commit.max_file_size
        items: list[tuple[str, str, bytes]] = []
        protected: list[str] = []
        # reasons not to keep the agent's commits as commits (its work tree is still kept)
        unkept: list[str] = []
        for sha in commits:
            raw = ctx.worktree.commit_message_of(sha)
            items.append((f"commit {sha[:10]}", "commit message", raw))
            if _claims_to_be_outloops(raw):
                unkept.append(f"{sha[:10]} carries outloop's own trailers")
            for path, blob in ctx.worktree.commit_files(sha):
                items.append((path, "file name", path.encode("utf-8", "surrogateescape")))
                items.append((path, f"content in commit {sha[:10]}", blob))
                if match_any(path, patterns):
                    protected.append(path)
                if len(blob) > max_file_size:
                    unkept.append(f"{sha[:10]} holds {path} ({len(blob)} bytes)")
        hits = ctx.plan.access.scan_data(items)
        if hits:
            found = [
                {"path": h.path, "secret": h.name, "form": h.form, "where": h.where} for h in hits
            ]
            ctx.audit("secret_in_diff", iteration=n, hits=found[:50], commits=commits[:50])
            shown = ", ".join(sorted({f"{h.path} ({h.name}, {h.where})" for h in hits})[:10])
            return Stop(
                StopReason.SECRET_IN_DIFF,
                f"a commit the agent made itself contains a secret: {shown}; "
                "nothing of this turn was kept, imported or pushed",
            )
        if protected:
            touched = sorted(set(protected))
            ctx.audit("protected_path", iteration=n, paths=touched[:50], commits=commits[:50])
            return Stop(
                StopReason.PROTECTED_PATH,
                "a commit the agent made itself changed protected path(s): "
                + ", ".join(touched[:10])
                + "; nothing of this turn was kept",
            )
        if unkept:
            ctx.audit("agent_commits_not_kept", iteration=n, reasons=unkept[:50])
            ctx.note(
                n,
                "the agent's own commits are not kept as commits ("
                + "; ".join(unkept[:5])
                + "): the iteration commit holds its work instead",
            )
            return None
        self.agent_head = commits[-1]
        ctx.audit("agent_commits", iteration=n, commits=commits[:50], count=len(commits))
        return None


def _claims_to_be_outloops(raw_commit: bytes) -> bool:
    """Whether a commit's message carries a trailer of outloop's protocol (resume reads them)."""
    _, _, message = raw_commit.partition(b"\n\n")
    keys = (trailers.RUN, trailers.ITERATION, trailers.AUDIT_HEAD, trailers.GOAL, trailers.LOOP)
    return any(
        line.strip().lower().startswith(f"{key.lower()}:".encode())
        for line in message.splitlines()
        for key in keys
    )
