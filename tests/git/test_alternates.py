"""Alternates written so that git itself reads them back, whatever the stores' paths hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from outloop_cli.git.alternates import format_alternates, parse_alternates
from outloop_cli.git.repo import discover
from tests.conftest import RepoFactory, git

ODD_NAMES = ["plain", "line\nbreak", '#hash "quote"', "back\\slash\ttab", "ünï cödé"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_git_reads_a_store_from_the_file_whatever_its_path(
    name: str, tmp_path: Path, make_repo: RepoFactory
) -> None:
    source = make_repo({"a.txt": "borrowed\n"}, name=f"{name}/source")
    blob = git(source, "rev-parse", "HEAD:a.txt").strip()
    borrower = tmp_path / "borrower.git"
    git(tmp_path, "init", "-q", "--bare", str(borrower))
    store = source / ".git" / "objects"
    (borrower / "objects" / "info" / "alternates").write_bytes(format_alternates([store]))

    assert git(borrower, "cat-file", "-p", blob) == "borrowed\n"
    content = (borrower / "objects" / "info" / "alternates").read_bytes()
    assert parse_alternates(content, borrower / "objects") == [store.resolve()]


def test_relative_stores_and_comments_read_as_git_reads_them(tmp_path: Path) -> None:
    objects = tmp_path / "repo" / "objects"
    content = b'# a comment\n../../other/objects\n"/quoted/\\156ame\\n"\n\n"broken\n'
    assert parse_alternates(content, objects) == [
        (tmp_path / "other" / "objects").resolve(),
        Path("/quoted/name\n"),
        # an unfinished quote is a plain (relative) path to git
        (objects / '"broken').resolve(),
    ]


def test_a_checkout_whose_path_holds_a_line_break_is_found_whole(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo({"a.txt": "a\n"}, name="one\ntwo/repo")
    info = discover(repo / ".")
    assert info.root == repo.resolve()
    assert info.common_dir == (repo / ".git").resolve()
