"""Putting a run into the machine-wide run index (``store/run_index.py``) as it starts.

The index is a convenience for finding runs from anywhere; a run whose entry
cannot be written still runs, and says so once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outloop_cli.errors import OutloopError
from outloop_cli.store.run_index import register_run

if TYPE_CHECKING:
    from outloop_cli.engine.context import RunContext


def register_in_index(ctx: RunContext) -> None:
    record = ctx.record
    repo = ctx.plan.repo
    try:
        register_run(
            run_id=record.run_id,
            repo_root=repo.info.root,
            common_dir=repo.info.common_dir,
            loop=record.loop,
            workspace=workspace_of(ctx),
            started_at=record.started_at,
        )
    except OSError as exc:
        ctx.note(
            ctx.current_n(),
            f"warning: the run is not in the run index ({exc}); "
            "`outloop status --all` will not list it",
        )


def workspace_of(ctx: RunContext) -> str | None:
    """The policy's workspace for this repository, whether or not the loop asked for secrets."""
    grants = ctx.plan.access.grants
    if grants is not None and grants.workspace is not None:
        return str(grants.workspace)
    from outloop_cli.credentials.policy import match_workspace

    repo = ctx.plan.repo
    try:
        match = match_workspace(repo.info.root, repo.remote_urls(), policy_path=ctx.options.policy)
    except OutloopError:
        # a policy that cannot be read did not stop the run; the index just has no name
        return None
    return match.workspace.name if match.workspace is not None else None
