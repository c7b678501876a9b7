"""The checks after an agent's turn, on a real worktree without running any agent."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from outloop_cli.engine.context import RunContext
from outloop_cli.engine.events import Event
from outloop_cli.engine.guards import Guards
from outloop_cli.engine.plan import RunOptions, plan_loop
from outloop_cli.engine.start import create_worktree
from outloop_cli.git.repo import Repository, discover
from outloop_cli.store.records import StopReason
from tests.conftest import RepoFactory, git

LOOP = """\
agent:
  preset: command
  command: [/bin/true]
goal:
  run: "true"
protect: ["migrations/**"]
"""


def context(make_repo: RepoFactory, tmp_path: Path) -> tuple[RunContext, list[Event]]:
    root = make_repo({".outloop/fix.yml": LOOP, "app.py": "x = 1\n", "migrations/001.sql": "-\n"})
    repo = Repository(discover(root))
    plan = plan_loop(repo, "fix", RunOptions())
    events: list[Event] = []
    ctx = RunContext(
        plan,
        RunOptions(),
        observer=events.append,
        cancel=threading.Event(),
        interrupt=threading.Event(),
    )
    ctx.store.create(ctx.run_id)
    ctx.worktree = create_worktree(ctx, tmp_path / "wt", "outloop/test")
    return ctx, events


def audited(ctx: RunContext) -> list[dict[str, object]]:
    return [json.loads(line) for line in ctx.paths.audit.read_text().splitlines()]


def test_a_turn_that_changed_only_ordinary_files_passes(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    ctx, _ = context(make_repo, tmp_path)
    guards = Guards(ctx)
    guards.capture_git_config()
    (ctx.worktree.path / "app.py").write_text("x = 2\n")
    changes = ctx.worktree.changes()
    assert guards.git_config(1) is None
    assert guards.protected_paths(1, changes) is None
    assert guards.secrets(1, [c.path for c in changes]) is None
    assert not ctx.paths.audit.exists()


def test_a_protected_path_is_saved_as_a_patch_and_stops_the_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    ctx, _ = context(make_repo, tmp_path)
    (ctx.worktree.path / "migrations" / "001.sql").write_text("DROP TABLE users;\n")
    (ctx.worktree.path / "app.py").write_text("x = 2\n")
    stop = Guards(ctx).protected_paths(2, ctx.worktree.changes())

    patch = ctx.paths.logs / "iter-002-protected.patch"
    assert stop is not None and stop.reason is StopReason.PROTECTED_PATH
    assert stop.detail == (
        "the agent changed protected path(s): migrations/001.sql; "
        f"not committed, the change is saved in {patch}"
    )
    assert "DROP TABLE users;" in patch.read_text()
    [event] = audited(ctx)
    assert (event["event"], event["iteration"], event["paths"]) == (
        "protected_path",
        2,
        ["migrations/001.sql"],
    )


def test_a_planted_hook_is_put_back_and_stops_the_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    ctx, _ = context(make_repo, tmp_path)
    guards = Guards(ctx)
    guards.capture_git_config()
    hooks = ctx.plan.repo.info.common_dir / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\ncurl evil\n")

    stop = guards.git_config(1)

    assert stop is not None and stop.reason is StopReason.PROTECTED_PATH
    assert str(hooks) in stop.detail
    assert not (hooks / "pre-commit").exists()
    [event] = audited(ctx)
    assert (event["event"], event["kind"]) == ("protected_path", "git_config")
    # put back: the next check finds nothing
    assert guards.git_config(2) is None


def _agent_commit(ctx: RunContext, path: str, content: str | bytes, message: str) -> None:
    """What the agent's own `git commit` does in the worktree (through its .git file)."""
    target = ctx.worktree.path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    git(ctx.worktree.path, "add", path)
    git(ctx.worktree.path, "commit", "-qm", message)


def test_the_agents_own_commits_are_built_on_once_they_pass(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    ctx, _ = context(make_repo, tmp_path)
    _agent_commit(ctx, "feature.py", "x = 3\n", "a feature")
    guards = Guards(ctx)

    assert guards.agent_commits(1) is None

    assert guards.agent_head is not None
    assert git(ctx.worktree.path, "log", "-1", "--format=%s", guards.agent_head) == "a feature\n"
    [event] = audited(ctx)
    assert (event["event"], event["count"]) == ("agent_commits", 1)


def test_an_agent_commit_on_a_protected_path_stops_the_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    ctx, _ = context(make_repo, tmp_path)
    _agent_commit(ctx, "migrations/002.sql", "DROP TABLE users;\n", "cleanup")
    guards = Guards(ctx)

    stop = guards.agent_commits(1)

    assert stop is not None and stop.reason is StopReason.PROTECTED_PATH
    assert "migrations/002.sql" in stop.detail
    assert guards.agent_head is None


@pytest.mark.parametrize("kind", ["trailers", "oversized"])
def test_agent_commits_that_forge_trailers_or_hold_a_huge_file_are_not_built_on(
    make_repo: RepoFactory, tmp_path: Path, kind: str
) -> None:
    ctx, _ = context(make_repo, tmp_path)
    if kind == "trailers":
        # resume and `audit verify` read these: the agent must not write its own
        _agent_commit(ctx, "a.py", "a = 1\n", "done\n\nOutloop-Run: x\nOutloop-Iteration: 9")
    else:
        _agent_commit(ctx, "big.bin", b"\0" * (ctx.config.commit.max_file_size + 1), "data")
    guards = Guards(ctx)

    assert guards.agent_commits(1) is None

    assert guards.agent_head is None
    [event] = audited(ctx)
    assert event["event"] == "agent_commits_not_kept"
