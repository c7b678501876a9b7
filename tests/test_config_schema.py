"""`outloop schema`: a JSON Schema that says what the validator says, for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from outloop_cli.config import check_loop_text
from outloop_cli.config.model import PRESETS
from outloop_cli.config.schema import json_schema
from outloop_cli.templates_dir import SCHEMA_TOKEN, loop_template, render_demo_loop
from tests.config_corpus import INVALID_FIXTURES, VALID, InvalidFixture, ids, load_yaml12
from tests.e2e import run_cli


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
        "protect",
        "credentials",
        "sandbox",
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
