"""An agent that plants git config or hooks gets caught before any git command runs them.

Without a sandbox the agent can write the user's repository and outloop's own
git dir for the run: both are guarded (checked after each turn, put back, the
run stops). What it plants in its own private git dir is its own business:
outloop's git never reads that config, so nothing planted there runs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import RepoFactory, git
from tests.support.e2e import agent_cmd, checkout_state, loop_yaml, only_run, run_cli


@pytest.mark.parametrize(
    ("what", "where"),
    [
        ("fsmonitor", "user"),
        ("filter", "user"),
        ("hook", "user"),
        ("global", "user"),
        ("fsmonitor", "run"),
        ("filter", "run"),
        ("hook", "run"),
    ],
)
def test_planted_git_config_is_restored_and_stops_the_run(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, where: str
) -> None:
    canary = "canary-" + secrets.token_hex(12)
    monkeypatch.setenv("SOME_API_TOKEN", canary)  # in outloop's environment, not the agent's
    pwned = tmp_path / "pwned"
    target = str(tmp_path / "repo1" / ".git") if where == "user" else "run"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("config_planter_agent.py", what, str(pwned), target),
                "false",
                # unsandboxed on purpose: this is the guard that protects a run without a
                # sandbox; inside one, config and hooks are read-only and nothing is planted
                sandbox="none",
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


@pytest.mark.parametrize("what", ["fsmonitor", "filter", "hook"])
def test_config_planted_in_the_agents_own_git_dir_runs_nothing(
    make_repo: RepoFactory, tmp_path: Path, what: str
) -> None:
    pwned = tmp_path / "pwned"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("config_planter_agent.py", what, str(pwned)),
                "false",
                limits={"max_iterations": 2},
            )
        }
    )

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 1, done.stderr
    record = only_run(repo)
    # the agent's own config is not the user's and not outloop's: the run goes on
    assert record["stop_reason"] == "max_iterations", record["stop_detail"]
    assert not pwned.exists(), "a planted program ran: " + pwned.read_text()[:200]
    assert "innocent.txt" in git(
        repo, "log", "--name-only", "--format=", f"main..{record['branch']}"
    )


def test_a_runs_git_reads_no_filter_of_the_users_config(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # the worktree's .gitattributes is the agent's to write: with the user's config
    # read, it could switch on any filter driver the user has for outloop's git
    seen = tmp_path / "filter-env"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), "false"),
            ".gitattributes": "*.txt filter=record\n",
        }
    )
    git(repo, "config", "filter.record.clean", f"sh -c 'env >> {seen}; cat'")
    git(repo, "config", "--global", "filter.record.clean", f"sh -c 'env >> {seen}; cat'")

    done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    assert not seen.exists(), "outloop's git ran a filter: " + seen.read_text()[:200]


def test_in_the_sandbox_outloops_git_dir_for_the_run_is_out_of_reach(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(
                agent_cmd("config_planter_agent.py", "fsmonitor", str(pwned), "run"),
                "false",
                sandbox="bwrap",
                limits={"max_iterations": 1},
            )
        }
    )

    done = run_cli(repo, "run", "fix")

    record = only_run(repo)
    own = repo / ".git" / "outloop" / "runs" / str(record["run_id"]) / "git"
    assert done.returncode == 1, done.stderr
    # the write never reached it (at best a file of the sandbox's own tmpfs):
    # nothing to catch or put back afterwards
    assert record["stop_reason"] == "max_iterations", record["stop_detail"]
    assert "fsmonitor" not in (own / "config").read_text()
    assert not pwned.exists()
