"""Everything one run does with its forge, in the order the engine needs it.

The engine builds a ``RunForge`` when the run starts (a CI goal, ``push:
true`` or ``pr: true``), then after every commit calls ``push(sha)`` and
passes ``goal_context_fields()`` into the ``GoalContext`` of the CI goal;
when the run ends it calls ``publish_pr(record)`` (with ``pr: true``) and,
always, ``close()`` — which revokes a minted GitHub App token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outloop_cli.forges.pull_request import PullRequestInfo, publish_pull_request
from outloop_cli.forges.session import ForgeSession
from outloop_cli.git.push import PushRejected, PushResult, push_branch, remote_branch_head
from outloop_cli.git.worktree import Worktree
from outloop_cli.store.records import RunRecord

__all__ = ["RunForge"]

PushEnv = Callable[[], Mapping[str, str]]


@dataclass
class RunForge:
    session: ForgeSession | None
    worktree: Path
    branch: str
    remote_url: str
    remote: str = "origin"
    # where the remote branch was left by this run ("" = not pushed yet; from run.json on resume)
    pushed: str = ""
    # credentials for git: by default the session's token (App tokens need this);
    # the broker's ``push_env`` for a loop whose push credential is a plain `via: git` token
    push_env: PushEnv | None = None
    history: list[PushResult] = field(default_factory=list)

    def _env(self) -> Mapping[str, str]:
        if self.push_env is not None:
            return self.push_env()
        if self.session is not None and self.remote_url.startswith(("http://", "https://")):
            return self.session.git_env(self.remote_url)
        return {}

    def push(self, sha: str) -> PushResult:
        """Push ``sha`` as the run's branch, leased on what this run pushed last."""
        result = push_branch(
            self.worktree,
            remote=self.remote,
            branch=self.branch,
            sha=sha,
            expected=self.pushed,
            env=self._env(),
        )
        self.pushed = sha
        self.history.append(result)
        return result

    def adopt_remote(self) -> str:
        """On resume: lease on where the remote branch is, if that commit is this branch's own.

        Returns the remote head ("" when the branch is not on the remote). A
        remote head that is not a commit of the local branch was pushed by
        someone else, and is never overwritten.
        """
        head = remote_branch_head(
            self.worktree, remote=self.remote, branch=self.branch, env=self._env()
        )
        if head and not Worktree(self.worktree, self.branch).is_ancestor(
            head, f"refs/heads/{self.branch}"
        ):
            raise PushRejected(
                f"the remote {self.branch} is at {head[:10]}, which this run did not make",
                hint="someone else pushed to the run's branch; look at it before resuming",
            )
        self.pushed = head
        return head

    def goal_context_fields(self) -> dict[str, Any]:
        """``GoalContext(..., **run_forge.goal_context_fields())`` for the CI goal."""
        return {"head_sha": self.pushed or None, "forge": self.session}

    def publish_pr(
        self,
        record: RunRecord,
        *,
        base: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PullRequestInfo:
        if self.session is None:
            raise RuntimeError("publish_pr needs a forge session")
        return publish_pull_request(self.session, record, base=base, environ=environ)

    @property
    def warnings(self) -> list[str]:
        return list(self.session.warnings) if self.session is not None else []

    def mask_values(self) -> list[str]:
        """Tokens in use (a minted App token is not among the run's granted secrets)."""
        return self.session.secret_values() if self.session is not None else []

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
