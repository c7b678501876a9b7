"""``outloop pr RUN``: push the run's branch if needed and open or update its pull request."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.commands.run_ref import open_run
from outloop_cli.config.source import load_loop_file_at
from outloop_cli.engine.access import REFUSED_FOR_PR_COMMAND, resolve_forge_token
from outloop_cli.engine.forge import RunForge
from outloop_cli.errors import UsageError
from outloop_cli.forges.pull_request import PullRequestInfo, publish_pull_request
from outloop_cli.forges.remote import api_url_for, resolve_repo
from outloop_cli.forges.session import ForgeSession, open_forge_session
from outloop_cli.git.push import PushResult
from outloop_cli.git.repo import Repository
from outloop_cli.store.records import RunRecord


@dataclass(frozen=True)
class PullRequestOutcome:
    """What ``outloop pr RUN`` did: the pull request opened or updated, and any push it needed."""

    run_id: str
    branch: str
    pull: PullRequestInfo
    pushed: PushResult | None
    warnings: tuple[str, ...]


def forge_settings(repo: Repository, record: RunRecord) -> tuple[str, str | None, str | None]:
    """(provider, repo, api_url) from the run's loop file at its starting commit."""
    config = load_loop_file_at(repo, record.base_commit, record.config_path, record.loop)
    ci = config.goal.ci if config is not None else None
    if ci is None:
        return "github", None, None
    return ci.provider, ci.repo, ci.api_url


def forge_secret(repo: Repository, provider: str, remote_url: str, api_url: str) -> str:
    """The ``github``/``gitlab`` secret of the repo's workspace, as the policy allows there."""
    return resolve_forge_token(
        provider, repo.info.root, remote_url, refusal=REFUSED_FOR_PR_COMMAND, api_url=api_url
    )


def ensure_pushed(
    repo: Repository, session: ForgeSession, record: RunRecord, remote_url: str
) -> PushResult | None:
    """Push the run branch unless the remote has it already; never overwrite another's commits."""
    local = repo.branch_head(record.branch)
    if local is None:
        raise UsageError(
            f"the run's branch {record.branch} is gone from this repository",
            hint="a pull request needs the branch; it may have been deleted",
        )
    forge = RunForge(session, worktree=repo.info.root, branch=record.branch, remote_url=remote_url)
    if forge.adopt_remote() == local:
        return None
    return forge.push(local)


def pull_request_for_run(
    cwd: Path,
    run: str,
    *,
    base: str | None = None,
    push: bool = True,
    secret: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> PullRequestOutcome:
    env = os.environ if environ is None else environ
    opened = open_run(cwd, run)
    repo = Repository(opened.repo)
    record = opened.store.load(opened.run_id)
    provider, repo_name, api_url = forge_settings(repo, record)
    remote_url = repo.remote_url("origin")
    if remote_url is None:
        raise UsageError(
            "this repository has no `origin` remote to open a pull request on",
            hint="add one with `git remote add origin URL`",
        )
    if secret is None:
        remote = resolve_repo(repo_name, remote_url, provider=provider)
        base_url = api_url_for(provider, remote.host, api_url, env)
        secret = forge_secret(repo, provider, remote_url, base_url)
    value = secret
    session = open_forge_session(
        provider=provider,
        secret=value,
        remote_url=remote_url,
        repo=repo_name,
        api_url=api_url,
        environ=env,
        want_pr=True,
    )
    try:
        pushed = ensure_pushed(repo, session, record, remote_url) if push else None
        pull = publish_pull_request(session, record, base=base, environ=env)
    finally:
        session.close()
    return PullRequestOutcome(record.run_id, record.branch, pull, pushed, tuple(session.warnings))
