"""An agent that plants git config or hooks gets caught before any git command runs them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import agent_cmd, checkout_state, loop_yaml, only_run, run_cli


@pytest.mark.parametrize("what", ["fsmonitor", "filter", "global", "hook"])
def test_planted_git_config_is_restored_and_stops_the_run(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    canary = "canary-" + secrets.token_hex(12)
    monkeypatch.setenv("SOME_API_TOKEN", canary)  # in outloop's environment, not the agent's
    pwned = tmp_path / "pwned"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("config_planter_agent.py", what, str(pwned)), "false"
            )
        }
    )
    config_before = (repo / ".git" / "config").read_bytes()
    global_before = (Path(os.environ["HOME"]) / ".gitconfig").read_bytes()
    before = checkout_state(repo)

    done = run_cli(repo, "run", "fix")
    # the user goes on working in their checkout afterwards
    (repo / "new.txt").write_text("user work\n")
    git(repo, "add", "new.txt")
    git(repo, "commit", "-qm", "user commit")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    assert record["stop_reason"] == "protected_path"
    assert "git configuration or hooks" in record["stop_detail"]
    assert not pwned.exists(), "a planted program ran: " + pwned.read_text()[:200]
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert (Path(os.environ["HOME"]) / ".gitconfig").read_bytes() == global_before
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert checkout_state(repo)["stash"] == before["stash"]


def test_outloop_git_does_not_see_unrelated_environment(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # even a filter the *user* configured sees only git's allow-list of variables
    canary = "canary-" + secrets.token_hex(12)
    monkeypatch.setenv("SOME_API_TOKEN", canary)
    seen = tmp_path / "filter-env"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), "false"),
            ".gitattributes": "*.txt filter=record\n",
        }
    )
    git(repo, "config", "filter.record.clean", f"sh -c 'env >> {seen}; cat'")

    done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    assert seen.exists(), "the user's filter should still work for outloop's commits"
    assert canary not in seen.read_text()
