"""The bundled templates: starter loop files per preset, and the demo's loop file.

The loader's own test checks them as config; here they must be plain YAML,
use only the keys of ``outloop_cli.config.model`` and document every one.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from outloop_cli import templates_dir
from outloop_cli.agents.registry import PRESETS
from outloop_cli.config.model import (
    PLACEHOLDERS,
    AgentConfig,
    CIGoalConfig,
    CommitConfig,
    CredentialConfig,
    GoalConfig,
    LimitsConfig,
    LoopConfig,
)
from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.templates_dir import (
    PYTHON_TOKEN,
    SCHEMA_TOKEN,
    available_presets,
    demo_agent_script,
    demo_dir,
    demo_fixes_file,
    demo_project_dir,
    loop_template,
    render_demo_loop,
    templates_root,
)

SCHEMA_LINE = "# yaml-language-server: $schema={schema_path}"
DURATION = re.compile(r"^\d+(?:\.\d+)?[smh]$")
SECTIONS: dict[str, type[Any]] = {
    "agent": AgentConfig,
    "goal": GoalConfig,
    "limits": LimitsConfig,
    "commit": CommitConfig,
}


def fields_of(cls: type[Any], *, besides: tuple[str, ...] = ()) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - set(besides)


TOP_KEYS = fields_of(LoopConfig, besides=("name", "path"))
CREDENTIAL_KEYS = fields_of(CredentialConfig, besides=("name",))
ALL_KEYS = (
    TOP_KEYS
    | CREDENTIAL_KEYS
    | fields_of(CIGoalConfig)
    | set().union(*(fields_of(cls) for cls in SECTIONS.values()))
)


def unknown_keys(data: dict[str, Any]) -> list[str]:
    """Dotted paths of the keys in a parsed loop file that model.py does not know."""
    unknown = [key for key in data if key not in TOP_KEYS]
    for section, cls in SECTIONS.items():
        body = data.get(section) or {}
        unknown += [f"{section}.{key}" for key in body if key not in fields_of(cls)]
    ci = (data.get("goal") or {}).get("ci") or {}
    unknown += [f"goal.ci.{key}" for key in ci if key not in fields_of(CIGoalConfig)]
    for name, entry in (data.get("credentials") or {}).items():
        unknown += [f"credentials.{name}.{key}" for key in entry if key not in CREDENTIAL_KEYS]
    return unknown


def durations(data: dict[str, Any]) -> list[Any]:
    agent, goal, limits = data["agent"], data["goal"], data.get("limits", {})
    values = [agent.get("timeout"), agent.get("idle_timeout"), goal.get("timeout")]
    return [value for value in [*values, limits.get("max_time")] if value is not None]


def parse_loop_template(preset: str) -> dict[str, Any]:
    text = loop_template(preset).replace(SCHEMA_TOKEN, "/opt/outloop/schema.json")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def test_there_is_a_loop_template_for_every_preset() -> None:
    assert available_presets() == tuple(sorted(PRESETS))
    assert {path.stem for path in (templates_root() / "loops").iterdir()} == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_loop_template_starts_with_the_schema_comment(preset: str) -> None:
    text = loop_template(preset)
    assert text.splitlines()[0] == SCHEMA_LINE
    assert text.count(SCHEMA_TOKEN) == 1
    assert text.endswith("\n")


@pytest.mark.parametrize("preset", PRESETS)
def test_loop_template_is_yaml_with_known_keys_and_the_defaults(preset: str) -> None:
    data = parse_loop_template(preset)
    assert unknown_keys(data) == []
    assert data["agent"]["preset"] == preset
    assert data["goal"] == {"run": "pytest -q", "timeout": "10m"}
    assert data["limits"] == {"max_iterations": 10, "max_time": "1h", "stall": 3}
    assert data["push"] is False
    assert data["sandbox"] == "auto"
    assert all(DURATION.match(value) for value in durations(data)), durations(data)
    assert data["agent"]["prompt"].strip()
    if preset == "command":
        assert data["agent"]["command"] == ["my-agent", "--task-file", "{prompt_file}"]
    else:
        assert "command" not in data["agent"]


@pytest.mark.parametrize("preset", PRESETS)
def test_loop_template_documents_every_key(preset: str) -> None:
    text = loop_template(preset)
    missing = sorted(key for key in ALL_KEYS if not re.search(rf"\b{key}:", text))
    assert missing == []
    assert "pytest -q --junitxml=reports/junit.xml" in text
    assert "junit: reports/junit.xml" in text
    assert "max_file_size: 5MB" in text
    if preset != "command":
        assert re.search(r"^# credentials:$", text, re.MULTILINE)


@pytest.mark.parametrize("preset", PRESETS)
def test_loop_template_braces_are_placeholders_or_the_schema_token(preset: str) -> None:
    tokens = set(re.findall(r"\{(\w*)\}", loop_template(preset)))
    assert tokens <= {*PLACEHOLDERS, "schema_path"}
    # init substitutes with str.replace; str.format would choke on the placeholders
    with pytest.raises(KeyError):
        loop_template(preset).format(schema_path="x")


def test_loop_template_for_an_unknown_preset_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        loop_template("copilot")
    assert caught.value.hint is not None
    assert "claude" in caught.value.hint


def test_demo_loop_keeps_the_python_token_for_the_demo_command() -> None:
    text = (demo_dir() / "loop.yml").read_text(encoding="utf-8")
    assert (
        'command: ["{python}", "{demo_agent}", "--fixes", "{demo_fixes}", "{prompt_file}"]' in text
    )
    assert 'run: "{python} -B -m tests.junit_report test-results/junit.xml"' in text
    assert "junit: test-results/junit.xml" in text
    assert text.count(PYTHON_TOKEN) == 2
    assert set(re.findall(r"\{(\w*)\}", text)) <= {
        *PLACEHOLDERS,
        "python",
        "demo_agent",
        "demo_fixes",
    }


@pytest.mark.parametrize(
    "python",
    [sys.executable, '/opt/my tools/py"3"/bin\\python3', "/home/zoë/.venv/bin/python"],
    ids=["this-python", "quotes-spaces-backslash", "non-ascii"],
)
def test_demo_loop_after_substitution(python: str) -> None:
    data = yaml.safe_load(render_demo_loop(python))
    assert unknown_keys(data) == []
    agent, goal, limits = data["agent"], data["goal"], data["limits"]
    assert agent["preset"] == "command"
    assert agent["command"] == [
        python,
        str(demo_agent_script()),
        "--fixes",
        str(demo_fixes_file()),
        "{prompt_file}",
    ]
    assert shlex.split(goal["run"]) == [
        python,
        "-B",
        "-m",
        "tests.junit_report",
        "test-results/junit.xml",
    ]
    assert goal["junit"] == "test-results/junit.xml"
    assert (agent["timeout"], goal["timeout"]) == ("60s", "60s")
    assert (limits["max_iterations"], limits["stall"]) == (6, 3)
    assert all(DURATION.match(value) for value in durations(data))
    assert "stand-in" in data["description"]


def test_demo_project_files() -> None:
    project = demo_project_dir()
    assert (project / "README.md").is_file()
    ignored = (project / ".gitignore").read_text(encoding="utf-8").split()
    assert {"__pycache__/", "*.pyc"} <= set(ignored)
    assert (project / "tests" / "__init__.py").is_file()
    assert (demo_dir() / "fixes.json").is_file()


def test_templates_root_prefers_the_copy_inside_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "templates").mkdir()
    monkeypatch.setattr(templates_dir.resources, "files", lambda package: tmp_path)
    assert templates_root() == tmp_path / "templates"


def test_templates_root_falls_back_to_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(templates_dir.resources, "files", lambda package: tmp_path)
    assert templates_root() == Path(templates_dir.__file__).resolve().parent.parent / "templates"


def test_templates_root_missing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(templates_dir.resources, "files", lambda package: tmp_path)
    monkeypatch.setattr(templates_dir, "__file__", str(tmp_path / "pkg" / "templates_dir.py"))
    with pytest.raises(CouldNotRun, match="templates are missing"):
        templates_root()
