"""The machine-wide run index: one file per run, read back without ever raising."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from outloop_cli.errors import UsageError
from outloop_cli.paths import state_home
from outloop_cli.store.run_index import (
    find_in_index,
    forget_run,
    index_dir,
    list_index,
    read_entry,
    register_run,
)
from outloop_cli.store.runs import RunStore
from tests.conftest import RepoFactory


def _register(
    repo: Path, run_id: str, *, loop: str = "fix", workspace: str | None = "acme"
) -> Path:
    common = repo / ".git"
    RunStore(common).create(run_id)
    (RunStore(common).paths(run_id).run_json).write_text("{}")
    return register_run(
        run_id=run_id,
        repo_root=repo,
        common_dir=common,
        loop=loop,
        workspace=workspace,
        started_at="2026-12-02T10:00:00+00:00",
    )


def test_an_entry_lives_under_xdg_state_home_and_reads_back(make_repo: RepoFactory) -> None:
    repo = make_repo({"a": "1"})
    path = _register(repo, "20261202-100000-aaaaaa")

    assert path.parent == index_dir() == state_home() / "index"
    assert str(path).startswith(os.environ["XDG_STATE_HOME"])
    (entry,) = list_index()
    assert entry.readable and entry.problem is None
    assert entry.run_id == "20261202-100000-aaaaaa"
    assert entry.repo_root == repo.resolve()
    assert entry.common_dir == (repo / ".git").resolve()
    assert entry.run_dir == (repo / ".git" / "outloop" / "runs" / entry.run_id).resolve()
    assert entry.paths.run_json.is_file()
    assert (entry.loop, entry.workspace) == ("fix", "acme")
    assert entry.gone_reason() is None
    # nothing live is cached in the entry: no state, no pid, no iteration
    data = json.loads(path.read_text())
    assert not {"state", "pid", "iteration", "cost_usd"} & set(data)


def test_registering_again_replaces_the_entry(make_repo: RepoFactory) -> None:
    repo = make_repo({"a": "1"})
    _register(repo, "20261202-100000-aaaaaa", workspace=None)
    register_run(
        run_id="20261202-100000-aaaaaa",
        repo_root=repo,
        common_dir=repo / ".git",
        loop="fix",
        workspace="acme",
        started_at="2026-12-02T10:00:00+00:00",
    )
    (entry,) = list_index()
    assert entry.workspace == "acme"
    assert [p.name for p in index_dir().iterdir()] == ["20261202-100000-aaaaaa.json"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"run_id": "20261202-100000-bbbbbb", "repo_ro',
        b"\xff\xfe not json",
        b"[1, 2]",
        b'{"run_id": "20261202-100000-bbbbbb"}',
        # names another run than its file
        b'{"run_id": "other", "repo_root": "/r", "common_dir": "/r/.git", "run_dir": "/x",'
        b' "loop": "fix", "started_at": "t"}',
        # relative paths would be read against whatever directory outloop runs in
        b'{"run_id": "20261202-100000-bbbbbb", "repo_root": "r", "common_dir": "r/.git",'
        b' "run_dir": "x", "loop": "fix", "started_at": "t"}',
    ],
)
def test_a_damaged_entry_is_listed_unreadable_next_to_good_ones(
    make_repo: RepoFactory, content: bytes
) -> None:
    repo = make_repo({"a": "1"})
    _register(repo, "20261202-100000-aaaaaa")
    damaged = index_dir() / "20261202-100000-bbbbbb.json"
    damaged.write_bytes(content)

    entries = list_index()

    assert [e.run_id for e in entries] == ["20261202-100000-aaaaaa", "20261202-100000-bbbbbb"]
    good, bad = entries
    assert good.readable
    assert not bad.readable and bad.problem and str(damaged) in bad.problem
    assert bad.gone_reason() is None
    with pytest.raises(UsageError, match="unreadable"):
        find_in_index("bbbbbb")


def test_an_unreadable_file_and_a_directory_in_the_index_do_not_raise(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo({"a": "1"})
    _register(repo, "20261202-100000-aaaaaa")
    (index_dir() / "20261202-100000-cccccc.json").mkdir()
    # a half-written temp file of a writer that died is not an entry
    (index_dir() / ".20261202-100000-dddddd.json.x.tmp").write_text("{")

    entries = list_index()

    assert [e.run_id for e in entries] == ["20261202-100000-aaaaaa", "20261202-100000-cccccc"]
    assert entries[1].problem is not None
    assert read_entry(index_dir() / "missing.json").problem is not None


def test_no_index_directory_means_no_entries() -> None:
    assert not index_dir().exists()
    assert list_index() == []
    with pytest.raises(UsageError) as caught:
        find_in_index("20261202")
    assert caught.value.hint is not None and "no run is in the index" in caught.value.hint


def test_find_takes_a_full_id_or_a_unique_prefix_or_suffix(make_repo: RepoFactory) -> None:
    one = make_repo({"a": "1"})
    two = make_repo({"b": "2"})
    _register(one, "20261202-100000-aaaaaa")
    _register(two, "20261202-110000-bbbbbb")

    assert find_in_index("20261202-100000-aaaaaa").repo_root == one.resolve()
    assert find_in_index("bbbbbb").repo_root == two.resolve()
    assert find_in_index("20261202-11").repo_root == two.resolve()
    with pytest.raises(UsageError) as ambiguous:
        find_in_index("20261202")
    assert "matches 2 runs" in ambiguous.value.message
    assert ambiguous.value.hint is not None and str(one.resolve()) in ambiguous.value.hint
    with pytest.raises(UsageError) as unknown:
        find_in_index("zzz")
    assert unknown.value.hint is not None and "20261202-110000-bbbbbb" in unknown.value.hint


def test_a_deleted_run_dir_or_repository_is_gone(make_repo: RepoFactory) -> None:
    import shutil

    one = make_repo({"a": "1"})
    two = make_repo({"b": "2"})
    _register(one, "20261202-100000-aaaaaa")
    _register(two, "20261202-110000-bbbbbb")
    shutil.rmtree(RunStore(one / ".git").paths("20261202-100000-aaaaaa").root)
    shutil.rmtree(two)

    first, second = list_index()

    assert first.gone_reason() is not None and "run directory" in first.gone_reason()  # type: ignore[operator]
    assert second.gone_reason() is not None and "git dir" in second.gone_reason()  # type: ignore[operator]


def test_forget_drops_only_that_entry(make_repo: RepoFactory) -> None:
    repo = make_repo({"a": "1"})
    _register(repo, "20261202-100000-aaaaaa")
    _register(repo, "20261202-110000-bbbbbb")

    elsewhere = make_repo({"c": "3"})
    assert forget_run("20261202-100000-aaaaaa", common_dir=elsewhere / ".git") is False
    assert forget_run("20261202-100000-aaaaaa", common_dir=repo / ".git") is True
    assert forget_run("20261202-100000-aaaaaa") is False
    assert [e.run_id for e in list_index()] == ["20261202-110000-bbbbbb"]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_a_run_id_cannot_name_a_file_outside_the_index(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        register_run(
            run_id=bad,
            repo_root=tmp_path,
            common_dir=tmp_path,
            loop="fix",
            workspace=None,
            started_at="t",
        )
