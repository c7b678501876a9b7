"""Where a loop is read from: a commit (for a run) or the work tree (for list and validate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from outloop_cli.config.source import (
    committed_loop_names,
    find_loop_files,
    load_committed_loop,
    load_loop_file_at,
    loop_file_candidates,
    read_committed_prompt,
)
from outloop_cli.errors import ConfigError, UsageError
from outloop_cli.git.repo import Repository, discover
from tests.conftest import RepoFactory, git

LOOP = "agent:\n  preset: command\n  command: [./fix.sh]\ngoal:\n  run: pytest -q\n"


def repository(root: Path) -> Repository:
    return Repository(discover(root))


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def test_a_committed_loop_is_read_from_its_commit_not_the_work_tree(
    make_repo: RepoFactory,
) -> None:
    root = make_repo({".outloop/fix.yml": LOOP, ".outloop/other.yaml": LOOP})
    (root / ".outloop" / "fix.yml").write_text("agent: [not, a, mapping]\n")
    repo = repository(root)
    config = load_committed_loop(repo, head(root), "fix")
    assert (config.name, config.path) == ("fix", ".outloop/fix.yml")
    assert load_committed_loop(repo, head(root), "other").path == ".outloop/other.yaml"
    assert committed_loop_names(repo, head(root)) == ["fix", "other"]


def test_an_invalid_committed_loop_names_the_file_at_its_commit(make_repo: RepoFactory) -> None:
    root = make_repo({".outloop/fix.yml": "agent: 3\n"})
    with pytest.raises(ConfigError) as raised:
        load_committed_loop(repository(root), head(root), "fix")
    assert raised.value.problems[0].file == f".outloop/fix.yml@{head(root)[:10]}"


@pytest.mark.parametrize(
    ("files", "uncommitted", "hint"),
    [
        ({"README": "x"}, {}, "create one with `outloop init` and commit it"),
        (
            {".outloop/other.yml": LOOP, ".outloop/b.yaml": LOOP},
            {},
            "loops at this commit: b, other",
        ),
        (
            {".outloop/other.yml": LOOP},
            {".outloop/fix.yaml": LOOP},
            ".outloop/fix.yml exists but is not committed; outloop reads loops from the "
            "starting commit so an agent cannot change its own config. Commit it first.",
        ),
    ],
    ids=["no loops", "other loops", "not committed yet"],
)
def test_a_missing_loop_says_what_is_there_instead(
    make_repo: RepoFactory, files: dict[str, str], uncommitted: dict[str, str], hint: str
) -> None:
    root = make_repo(files)
    for rel, text in uncommitted.items():
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(text)
    with pytest.raises(UsageError) as raised:
        load_committed_loop(repository(root), head(root), "fix")
    assert raised.value.message == f"no loop `fix` at commit {head(root)[:10]}"
    assert raised.value.hint == hint


def test_a_runs_own_loop_file_may_be_gone(make_repo: RepoFactory) -> None:
    root = make_repo({".outloop/fix.yml": LOOP})
    repo = repository(root)
    assert load_loop_file_at(repo, head(root), ".outloop/fix.yml", "fix") is not None
    assert load_loop_file_at(repo, head(root), ".outloop/gone.yml", "gone") is None


def test_the_prompt_file_comes_from_the_same_commit(make_repo: RepoFactory) -> None:
    with_file = LOOP.replace("  command:", "  prompt_file: PROMPT.md\n  command:")
    root = make_repo({".outloop/fix.yml": with_file, "PROMPT.md": "Fix it.\n"})
    repo = repository(root)
    config = load_committed_loop(repo, head(root), "fix")
    assert read_committed_prompt(repo, head(root), config) == "Fix it.\n"
    git(root, "rm", "-q", "PROMPT.md")
    git(root, "commit", "-qm", "no prompt")
    with pytest.raises(ConfigError) as raised:
        read_committed_prompt(repo, head(root), config)
    [problem] = raised.value.problems
    assert problem.file == f".outloop/fix.yml@{head(root)[:10]}"
    assert (problem.line, problem.col) == (3, 16)
    assert problem.message == f"agent.prompt_file: `PROMPT.md` is not in commit {head(root)[:10]}"
    assert problem.hint and "commit the prompt file" in problem.hint


def test_an_inline_prompt_or_none(make_repo: RepoFactory) -> None:
    root = make_repo({".outloop/a.yml": LOOP.replace("  command:", "  prompt: Go.\n  command:")})
    (root / ".outloop" / "b.yml").write_text(LOOP)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "b")
    repo = repository(root)
    inline = load_committed_loop(repo, head(root), "a")
    none = load_committed_loop(repo, head(root), "b")
    assert read_committed_prompt(repo, head(root), inline) == "Go."
    assert read_committed_prompt(repo, head(root), none) == ""


def test_loop_files_in_the_work_tree(tmp_path: Path) -> None:
    assert find_loop_files(tmp_path) == []
    folder = tmp_path / ".outloop"
    folder.mkdir()
    for name in ("b.yaml", "a.yml", ".hidden.yml", "notes.txt"):
        (folder / name).write_text(LOOP)
    (folder / "dir.yml").mkdir()
    assert [p.name for p in find_loop_files(tmp_path)] == ["a.yml", "b.yaml"]
    assert loop_file_candidates("fix") == (".outloop/fix.yml", ".outloop/fix.yaml")
