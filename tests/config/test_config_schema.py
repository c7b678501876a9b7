"""`outloop schema`: a JSON Schema that says what the validator says, for editors and CI."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from outloop_cli.agents.registry import PRESETS
from outloop_cli.config.loader import check_loop_text
from outloop_cli.config.loop_schema import json_schema
from outloop_cli.templates_dir import SCHEMA_TOKEN, loop_template, render_demo_loop
from tests.support.config_corpus import (
    CORPUS,
    INVALID_FIXTURES,
    VALID,
    InvalidFixture,
    ids,
    load_yaml12,
)
from tests.support.e2e import run_cli


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_schema())


def test_outloop_schema_prints_a_valid_draft_2020_12_schema(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "schema", check=True)
    schema = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == json_schema()
    assert done.stderr == ""


def test_outloop_schema_path_names_a_file_holding_the_schema(
    tmp_path: Path, isolated_user_state: Path
) -> None:
    first = run_cli(tmp_path, "schema", "--path", check=True).stdout.strip()
    path = Path(first)
    assert path.is_absolute() and path.is_file()
    # under the (test's) XDG cache, not in the repo or the package
    assert path.is_relative_to(isolated_user_state)
    assert json.loads(path.read_text()) == json_schema()
    # a stale or damaged copy is refreshed
    path.write_text("{}")
    second = run_cli(tmp_path, "schema", "--path", check=True).stdout.strip()
    assert second == first
    assert json.loads(path.read_text()) == json_schema()


def test_every_key_is_described(validator: jsonschema.Draft202012Validator) -> None:
    missing = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                if isinstance(prop, dict) and "description" not in prop and where.count(".") < 1:
                    missing.append(f"{where}{name}")
                walk(prop, f"{where}{name}.")
            for key in ("additionalProperties", "items"):
                if isinstance(node.get(key), dict):
                    walk(node[key], where)

    walk(json_schema(), "")
    assert missing == []
    assert set(json_schema()["properties"]) == {
        "description",
        "agent",
        "goal",
        "limits",
        "commit",
        "branch",
        "push",
        "pr",
        "protect",
        "credentials",
        "egress",
        "sandbox",
        "approve",
        "on",
    }


@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_schema_accepts_every_valid_fixture(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    errors = [e.message for e in validator.iter_errors(load_yaml12(path.read_text()))]
    assert errors == []


SCHEMA_FIXTURES = [f for f in INVALID_FIXTURES if f.schema_applies]
YAML_LEVEL_FIXTURES = [f for f in INVALID_FIXTURES if not f.schema_applies]


@pytest.mark.parametrize("fixture", SCHEMA_FIXTURES, ids=[f.path.name for f in SCHEMA_FIXTURES])
def test_schema_rejects_every_invalid_fixture(
    fixture: InvalidFixture, validator: jsonschema.Draft202012Validator
) -> None:
    document = load_yaml12(fixture.path.read_text(encoding="utf-8"))
    assert not validator.is_valid(document)


@pytest.mark.parametrize(
    "fixture", YAML_LEVEL_FIXTURES, ids=[f.path.name for f in YAML_LEVEL_FIXTURES]
)
def test_fixtures_marked_yaml_level_are_invisible_to_the_schema(
    fixture: InvalidFixture, validator: jsonschema.Draft202012Validator
) -> None:
    """`# schema: n/a` is only for problems JSON Schema cannot see: if the schema
    could reject the file, the mark would be hiding a gap in the schema."""
    try:
        document = load_yaml12(fixture.path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return  # the document never reaches a schema validator
    assert validator.is_valid(document)


def test_an_editor_on_draft_07_sees_the_same_corpus() -> None:
    """yaml-language-server validated with draft-07 for years; the schema avoids the
    2019+ keywords it would ignore (only prefixItems, a nicety, is left to newer drafts)."""
    schema = json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    draft7 = jsonschema.Draft7Validator(schema)
    for path in VALID:
        assert draft7.is_valid(load_yaml12(path.read_text())), path.name
    for fixture in SCHEMA_FIXTURES:
        document = load_yaml12(fixture.path.read_text(encoding="utf-8"))
        assert not draft7.is_valid(document), fixture.path.name
    text = json.dumps(schema)
    for keyword in ("dependentRequired", "dependentSchemas", "unevaluated", "$defs"):
        assert keyword not in text


def test_most_invalid_fixtures_are_checked_by_the_schema() -> None:
    assert len(SCHEMA_FIXTURES) >= 60


@pytest.mark.parametrize("preset", PRESETS)
def test_starter_files_satisfy_the_schema(
    preset: str, validator: jsonschema.Draft202012Validator
) -> None:
    text = loop_template(preset).replace(SCHEMA_TOKEN, "/tmp/schema.json")
    assert list(validator.iter_errors(load_yaml12(text))) == []


def test_demo_loop_satisfies_the_schema(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(load_yaml12(render_demo_loop("/usr/bin/python3")))) == []


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        # the rules between keys, one by one
        ({"agent": {"preset": "claude", "prompt": "x", "prompt_file": "p"}}, False),
        ({"agent": {"preset": "command"}}, False),
        ({"agent": {"preset": "command", "command": "a", "model": "m"}}, False),
        ({"agent": {"preset": "claude"}}, False),
        ({"agent": {"preset": "claude", "prompt_file": "p.md"}}, True),
        ({"goal": {"run": "x", "ci": {}}}, False),
        ({"goal": {}}, False),
        ({"goal": {"ci": {}, "junit": "r.xml"}}, False),
        ({"goal": {"ci": {"repo": "a/b/c"}}}, False),
        ({"goal": {"ci": {"provider": "gitlab", "repo": "a/b/c"}}}, True),
        ({"credentials": {"x": {"via": "git", "host": "h", "upstream": "https://h"}}}, False),
        ({"credentials": {"x": {"via": "git"}}}, False),
        ({"credentials": {"x": {"upstream": "https://h"}}}, False),
        ({"credentials": {"x": {"upstream": "https://h", "env": "X_URL"}}}, True),
        ({"credentials": {"x": {"via": "helper", "header": "h"}}}, False),
        ({"credentials": {"x": {"via": "helper"}}}, True),
        ({"limits": {"max_time": None, "max_cost_usd": 0.5, "idle": 1}}, False),
        ({"limits": {"max_time": None, "max_cost_usd": 0.5}}, True),
        ({"agent": {"preset": "command", "command": "a", "idle_timeout": 0}}, True),
        ({"agent": {"preset": "command", "command": "a", "timeout": 0}}, False),
        ({"agent": {"preset": "command", "command": ["", "x"]}}, False),
        ({"agent": {"preset": "command", "command": " "}}, False),
    ],
)
def test_schema_rules_between_keys(
    document: dict[str, Any], valid: bool, validator: jsonschema.Draft202012Validator
) -> None:
    base: dict[str, Any] = {
        "agent": {"preset": "command", "command": ["a"]},
        "goal": {"run": "true"},
    }
    merged = {**base, **document}
    assert validator.is_valid(merged) is valid
    # and the validator agrees
    config, problems = check_loop_text(yaml.safe_dump(merged), file="x.yml", name="x")
    assert (config is not None) is valid, problems


# --- differential: mutate valid files, the schema and the validator must agree ---------

CANDIDATES: list[Any] = [
    *(None, "", " ", 0, 1, -1, 2.5, 3.0, 1e6, True, "x", "5m", "0s", "-1s", "5MB"),
    *([], ["a"], ["a", "a"], [""], [1], {}, {"a": 1}),
    *("{run}", "{x}", "x{{y}}", "a b", "a/b", "/a", "a\\b", "OUTLOOP_X", "POST /x"),
    *("https://a.com", "http://a.com", "proxy", "git", "helper", "github", "gitlab"),
    *("command", "claude", "none", "bwrap"),
]
KEYS = sorted(
    {"preset", "command", "prompt", "prompt_file", "model", "args", "timeout", "idle_timeout"}
    | {"env", "pass_env", "run", "junit", "ci", "provider", "repo", "api_url", "required_checks"}
    | {"max_iterations", "max_time", "max_cost_usd", "max_tokens", "stall", "max_agent_errors"}
    | {"max_file_size", "branch", "push", "protect", "credentials", "sandbox", "via", "upstream"}
    | {"header", "scheme", "allow", "ca_bundle", "host", "description", "agent", "goal", "bogus"}
)
KEY_VALUES: list[Any] = [None, "x", 1, "5m", ["a"], {}, "https://a.com", "git", True]


def _mutations(document: Any, *, add_keys: bool) -> Iterator[tuple[str, Any]]:
    """(what changed, the changed document): every leaf replaced, every key removed or added."""

    def walk(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
        yield path, node
        if isinstance(node, (dict, list)):
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                yield from walk(child, (*path, key))

    def at(doc: Any, path: tuple[Any, ...]) -> Any:
        for part in path:
            doc = doc[part]
        return doc

    for path, node in list(walk(document, ())):
        if path:
            for value in CANDIDATES:
                changed = copy.deepcopy(document)
                at(changed, path[:-1])[path[-1]] = value
                yield f"{path} = {value!r}", changed
        if isinstance(node, dict):
            if not add_keys:
                continue
            for key in list(node):
                changed = copy.deepcopy(document)
                del at(changed, path)[key]
                yield f"del {(*path, key)}", changed
            for key in KEYS:
                for value in KEY_VALUES:
                    changed = copy.deepcopy(document)
                    at(changed, path)[key] = value
                    yield f"{(*path, key)} = {value!r}", changed


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "add_keys"),
    [
        ("everything.yml", False),  # every value of every key; adding keys too takes minutes
        ("ci-github.yml", True),
        ("gemini.yml", True),
        ("command-minimal.yml", True),
    ],
)
def test_schema_and_validator_agree_on_mutations(
    name: str, add_keys: bool, validator: jsonschema.Draft202012Validator
) -> None:
    base = load_yaml12((CORPUS / "valid" / name).read_text())
    disagree = []
    count = 0
    for what, document in _mutations(base, add_keys=add_keys):
        count += 1
        # JSON is YAML whose strings stay strings and numbers numbers in 1.1 and 1.2 alike
        config, problems = check_loop_text(json.dumps(document), file="x.yml", name="x")
        if validator.is_valid(document) != (config is not None):
            disagree.append((what, [p.message for p in problems]))
    assert disagree == []
    assert count > 1000


def test_outloop_schema_path_with_an_unwritable_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    done = run_cli(tmp_path, "schema", "--path")
    assert done.returncode == 3
    assert f"error: cannot write the schema to {blocker}/outloop/" in done.stderr
    assert "hint: set XDG_CACHE_HOME" in done.stderr
    assert "Traceback" not in done.stderr
    # printing the schema needs no cache
    assert json.loads(run_cli(tmp_path, "schema", check=True).stdout) == json_schema()
