"""Everything one run does with its forge, in the order the engine needs it.

:class:`RunForge` is the forge of one branch: ``push(sha)`` leased on what
this run pushed last, ``adopt_remote()`` on resume, ``goal_context_fields()``
for the CI goal, ``publish_pr(record)`` and ``close()`` (which revokes a
minted GitHub App token); ``outloop pr`` uses it too.

:class:`ForgeSteps` is the engine's side: it opens the forge when the run
needs one (a CI goal, ``push: true`` or ``pr: true``), pushes each iteration
with its audit event, and at the end publishes the pull request and closes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outloop_cli.errors import CouldNotRun, OutloopError
from outloop_cli.git.push import (
    PushRejected,
    PushResult,
    has_in_history,
    push_branch,
    remote_branch_head,
)
from outloop_cli.store.records import RunRecord

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext
    from outloop_cli.forges.pull_request import PullRequestInfo
    from outloop_cli.forges.session import ForgeSession

__all__ = ["ForgeSteps", "RunForge"]

PushEnv = Callable[[], Mapping[str, str]]


@dataclass
class RunForge:
    """A run's link to its forge: the session, where to push, and where the remote branch was left."""

    session: ForgeSession | None
    # the user's repository, where the run's commits are imported before they are pushed
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
        if head and not has_in_history(self.worktree, head, f"refs/heads/{self.branch}"):
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
        from outloop_cli.forges.pull_request import publish_pull_request

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


def open_run_forge_session(ctx: RunContext, remote_url: str, *, want_pr: bool) -> ForgeSession:
    """The run's forge API session, with the token the policy gives this repository (audited)."""
    from outloop_cli.forges.session import open_forge_session

    repo = ctx.plan.repo
    ci = ctx.config.goal.ci
    provider = ci.provider if ci is not None else "github"
    secret = ctx.plan.access.forge_token(
        provider,
        repo.info.root,
        remote_url,
        ctx.options.policy,
        on_decision=lambda decision: ctx.audit(decision.event, **decision.audit_fields()),
    )
    return open_forge_session(
        provider=provider,
        secret=secret,
        remote_url=remote_url,
        repo=ci.repo if ci is not None else None,
        api_url=ci.api_url if ci is not None else None,
        cancel=ctx.cancel,
        want_pr=want_pr,
    )


class ForgeSteps:
    """The run's forge from its opening to its closing; absent when the loop needs none."""

    def __init__(self, ctx: RunContext) -> None:
        from outloop_cli.engine.approval import ApprovalGates

        self._ctx = ctx
        self._forge: RunForge | None = None
        self._gates = ApprovalGates(ctx)

    def open(self) -> None:
        """Check the remote, open a forge session when the API is needed, adopt the remote."""
        ctx = self._ctx
        config = ctx.config
        if config.goal.ci is None and not config.push and not config.pr:
            return
        repo = ctx.plan.repo
        remote_url = repo.remote_url("origin")
        if remote_url is None:
            raise CouldNotRun(
                "`push` (forced by a CI goal) needs an `origin` remote",
                hint="add one with `git remote add origin URL`",
            )
        ci = config.goal.ci
        access = ctx.plan.access
        session = None
        if ci is not None or config.pr:
            session = open_run_forge_session(ctx, remote_url, want_pr=config.pr)
            for warning in session.warnings:
                ctx.note(0, warning)
        # kept before anything can fail, so the end of the run closes the session
        self._forge = forge = RunForge(
            session,
            worktree=repo.info.root,
            branch=ctx.record.branch,
            remote_url=remote_url,
            # without a forge session (a plain `push: true`), the broker's git credential
            # helper answers for outloop's push, with a capability the agent never sees
            push_env=(lambda: access.push_env(remote_url))
            if session is None and access.can_push
            else None,
        )
        # a fresh run finds no branch there; a resumed one leases on the commit it pushed
        # last, and a branch someone else pushed to is never overwritten
        forge.adopt_remote()
        # a minted App token is no granted secret, but must never be printed either
        ctx.masker = access.masker(extra=forge.mask_values())

    def push(self, n: int, sha: str) -> None:
        forge = self._forge
        if forge is None:
            return
        ctx = self._ctx
        # `approve: {push: true}`: raises GateClosed when a human denies the push
        self._gates.before_push(n, sha)
        ctx.emit("phase", n, "pushing", phase="push")
        result = forge.push(sha)
        ctx.audit(
            "pushed",
            iteration=n,
            commit=sha,
            branch=result.branch,
            previous=result.previous or None,
        )
        ctx.note(n, f"pushed {result.branch} at {sha[:10]}")

    def goal_context_fields(self) -> dict[str, Any]:
        return self._forge.goal_context_fields() if self._forge is not None else {}

    def close(self) -> None:
        """Open or update the pull request (``pr: true``), then revoke a minted App token."""
        forge, self._forge = self._forge, None
        if forge is None:
            return
        ctx = self._ctx
        try:
            refused = self._gates.before_pull_request() if ctx.config.pr and forge.pushed else None
            if refused is not None:
                ctx.record.stop_detail = (
                    f"{ctx.record.stop_detail}; the pull request was not opened or updated "
                    f"({refused.reason.value}: {refused.detail})"
                )
                ctx.note(ctx.current_n(), f"pull request not published: {refused.detail}")
            elif ctx.config.pr and forge.pushed:
                pull = forge.publish_pr(ctx.record)
                ctx.audit("pull_request", number=pull.number, url=pull.url, draft=pull.draft)
                ctx.note(ctx.current_n(), f"pull request {pull.url}")
        except OutloopError as exc:
            ctx.note(ctx.current_n(), f"could not open the pull request: {exc.message}")
        finally:
            forge.close()
            for warning in forge.warnings:
                ctx.note(ctx.current_n(), warning)
