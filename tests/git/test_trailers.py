"""The trailer protocol: what a commit message carries, read back from real commits."""

from __future__ import annotations

from pathlib import Path

from outloop_cli.engine.commit import commit_message
from outloop_cli.engine.resume import iteration_commits
from outloop_cli.git import trailers
from outloop_cli.git.repo import Repository, discover
from outloop_cli.git.worktree import Snapshot
from tests.conftest import git

SNAPSHOT = Snapshot(tree="t", parent="p", changed=("a",))


def _message(label: str, loop: str = "fix-tests") -> str:
    return commit_message(
        loop=loop,
        run_id="20261127-181200-abcdef",
        iteration=1,
        agent_label=label,
        goal_label=label,
        goal=None,
        agent=None,
        snapshot=SNAPSHOT,
    )


def test_a_label_keeps_its_emoji_but_loses_terminal_escapes() -> None:
    message = _message("bot 👩\u200d💻 \x1b]0;pwned\x07 \x1b[2J")
    assert "Outloop-Agent: bot 👩\u200d💻 ]0;pwned [2J\n" in message
    assert "\x1b" not in message and "\x07" not in message


def test_a_long_loop_name_is_kept_whole_and_labels_are_bounded() -> None:
    message = _message("L" * 300, loop="l" * 230)
    assert f"Outloop-Loop: {'l' * 230}\n" in message
    assert f"Outloop-Agent: {'L' * 200}\n" in message


def _commit(repo: Path, message: str) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def test_a_repeated_iteration_trailer_is_no_iteration(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    _commit(repo, "x\n\nOutloop-Run: R\nOutloop-Iteration: 1\nOutloop-Iteration: 2\n")
    _commit(repo, "y\n\nOutloop-Run: R\nOutloop-Iteration: 3\nOutloop-Goal: pass\n")

    found = iteration_commits(Repository(discover(repo)), base, "main", "R")

    assert [(c.iteration, c.goal) for c in found] == [(3, trailers.GOAL_PASS)]


def test_trailers_written_are_the_trailers_read(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, _message("claude"))

    [commit] = trailers.read(repo, ["HEAD"], [trailers.RUN, trailers.ITERATION, trailers.AGENT])

    assert commit.only(trailers.RUN) == "20261127-181200-abcdef"
    assert commit.only(trailers.ITERATION) == "1"
    assert commit.only(trailers.AGENT) == "claude"
