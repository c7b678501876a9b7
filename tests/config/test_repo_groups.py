"""Repository groups (`repos.yml`) and how `--repo` arguments become repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from outloop_cli.config.repo_groups import (
    check_repo_groups_text,
    default_repos_path,
    expand_repo_args,
    load_repo_groups,
)
from outloop_cli.errors import ConfigError, UsageError
from outloop_cli.paths import config_home
from tests.conftest import RepoFactory


def _problems(text: str) -> list[str]:
    groups, problems = check_repo_groups_text(text, file="repos.yml")
    assert groups is None
    return [p.render().splitlines()[0] for p in problems]


def test_a_good_file_loads_sorted_by_name() -> None:
    groups, problems = check_repo_groups_text(
        'groups:\n  nightly: [/srv/api]\n  clients: ["~/clients/*", /srv/acme]\n', file="r.yml"
    )
    assert problems == []
    assert groups is not None
    assert groups.names == ("clients", "nightly")
    assert groups.get("clients") == ("~/clients/*", "/srv/acme")
    assert groups.get("other") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "repos.yml:1:1: the repository groups file is empty"),
        ("groups: [\n", "repos.yml:2:1: invalid YAML"),
        ("grups: {}\n", "repos.yml:1:1: unknown key `grups` at the top level"),
        ("groups:\n  a: []\n", "repos.yml:2:6: groups.a: must not be empty"),
        ("groups:\n  a: /x\n", "repos.yml:2:6: groups.a: expected a list, got '/x'"),
        ("groups:\n  a: [x/y]\n", "repos.yml:2:7: groups.a[0]: 'x/y' is not an absolute path"),
        ("groups:\n  a: [~bob/x]\n", "repos.yml:2:7: groups.a[0]: '~bob/x': only `~/`"),
        ("groups:\n  a: [/x, /x]\n", "repos.yml:2:11: groups.a[1]"),
        ("groups:\n  A: [/x]\n", "repos.yml:2:3: groups: expected a group name, got 'A'"),
        ("groups:\n  a: [/x]\n  a: [/y]\n", "repos.yml:3:3: groups: duplicate key `a`"),
    ],
)
def test_every_problem_has_file_line_and_column(text: str, expected: str) -> None:
    assert any(line.startswith(expected) for line in _problems(text)), _problems(text)


def test_the_file_lives_in_the_users_config_dir_unless_outloop_repos_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert default_repos_path() == config_home() / "repos.yml"
    with pytest.raises(UsageError, match="no repository groups file at"):
        load_repo_groups()
    other = tmp_path / "groups.yml"
    other.write_text("groups:\n  a: [/x]\n")
    monkeypatch.setenv("OUTLOOP_REPOS", str(other))
    assert load_repo_groups().get("a") == ("/x",)
    other.write_bytes(b"groups:\n  a: [/\xff]\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_repo_groups()


def test_globs_keep_only_checkouts_and_paths_are_kept_as_given(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    a = make_repo({"f": "1"}, name="clients/a")
    b = make_repo({"f": "1"}, name="clients/b")
    (tmp_path / "clients" / "plain-dir").mkdir()
    (tmp_path / "clients" / "file.txt").write_text("x")

    targets = expand_repo_args(
        [str(tmp_path / "clients" / "*"), "clients/a", "missing", str(tmp_path / "no-*")],
        tmp_path,
    )

    assert [(t.path, t.problem) for t in targets[:2]] == [(a, None), (b, None)]
    # `clients/a` (relative to cwd) is the same repository as the glob's first: once
    assert [t.given for t in targets[2:]] == ["missing", str(tmp_path / "no-*")]
    assert targets[2].problem == f"{tmp_path / 'missing'} is not a directory"
    assert targets[3].problem == "matches no git checkout"


def test_home_is_expanded_and_groups_are_read_only_when_named(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    home_repo = Path.home() / "work" / "api"
    home_repo.mkdir(parents=True)
    groups_file = tmp_path / "repos.yml"
    groups_file.write_text("groups:\n  mine: [~/work/*]\n")
    # no groups file is needed for plain paths
    assert [t.path for t in expand_repo_args(["~/work/api"], tmp_path)] == [home_repo]
    (home_repo / ".git").mkdir()
    targets = expand_repo_args(["@mine"], tmp_path, groups_file=groups_file)
    assert [(t.given, t.path) for t in targets] == [("~/work/*", home_repo)]
    with pytest.raises(UsageError) as caught:
        expand_repo_args(["@theirs"], tmp_path, groups_file=groups_file)
    assert caught.value.hint == "the groups there: @mine"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ('groups:\n  clients: ["~/clients/*", /srv/acme]\n', True),
        ("groups:\n  a: []\n", False),
        ("groups:\n  a: [x/y]\n", False),
        ("groups:\n  A: [/x]\n", False),
        ("groups:\n  a: [/x]\nother: 1\n", False),
        ("{}\n", False),
    ],
)
def test_the_json_schema_agrees_with_the_validator(text: str, valid: bool) -> None:
    import jsonschema
    import yaml

    from outloop_cli.config.repo_groups import json_schema

    groups, _ = check_repo_groups_text(text, file="r.yml")
    assert (groups is not None) is valid
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(yaml.safe_load(text)))
    assert (not errors) is valid
