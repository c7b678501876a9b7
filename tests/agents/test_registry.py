"""The preset registry: the one list of preset names, read by the loop schema, built on use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from outloop_cli.agents.base import Invocation, TurnContext, base_result
from outloop_cli.agents.registry import (
    COMMAND,
    PRESETS,
    Preset,
    backend_class,
    default_credentials,
    make_agent,
    preset_names,
    prompted_presets,
)
from outloop_cli.config.loader import check_loop_text, load_loop_text
from outloop_cli.config.loop_schema import json_schema
from outloop_cli.config.model import AgentConfig, CredentialConfig
from outloop_cli.errors import UsageError
from outloop_cli.process.spawn import ProcessResult
from outloop_cli.store.records import AgentResult


def loop_text(preset: str, *, prompt: bool = True) -> str:
    agent = f"agent:\n  preset: {preset}\n"
    if preset == COMMAND:
        agent += "  command: [my-agent]\n"
    if prompt:
        agent += "  prompt: Make the tests pass.\n"
    return agent + "goal:\n  run: pytest -q\n"


def preset_enum(schema: dict[str, Any]) -> list[str]:
    enum: list[str] = schema["properties"]["agent"]["properties"]["preset"]["enum"]
    return enum


class EchoAgent:
    """A backend as a plugin would write one: the contract and nothing else."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    @classmethod
    def default_credentials(cls) -> tuple[CredentialConfig, ...]:
        return ()

    @property
    def label(self) -> str:
        return "echo"

    @property
    def executable(self) -> str:
        return "echo"

    def invocation(self, ctx: TurnContext) -> Invocation:
        return Invocation(argv=("echo", ctx.prompt_text))

    def interpret(self, result: ProcessResult, ctx: TurnContext) -> AgentResult:
        return base_result(result, f"logs/iter-{ctx.iteration:03d}-agent.log")


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """`echo` in the registry for one test (monkeypatch takes it out again)."""
    monkeypatch.setitem(PRESETS, "echo", Preset("echo", lambda: EchoAgent))


@pytest.mark.parametrize("preset", preset_names())
def test_every_registered_preset_builds_from_a_valid_loop(preset: str) -> None:
    config = load_loop_text(loop_text(preset), file="x.yml", name="x")
    agent = make_agent(config.agent)
    assert isinstance(agent, backend_class(preset))
    assert agent.label
    assert agent.executable
    assert isinstance(default_credentials(preset), tuple)


def test_the_schema_lists_exactly_the_registered_presets() -> None:
    assert preset_enum(json_schema()) == list(preset_names())
    assert preset_names() == ("claude", "codex", "aider", "gemini", "command")
    # and the validator says the same names, in the same order
    _, problems = check_loop_text(loop_text("copilot"), file="x.yml", name="x")
    assert [p.message for p in problems] == [
        "agent.preset: expected one of " + ", ".join(preset_names()) + ", got 'copilot'"
    ]


def test_only_the_command_preset_runs_without_a_prompt() -> None:
    assert prompted_presets() == tuple(p for p in preset_names() if p != COMMAND)
    for preset in preset_names():
        config, _ = check_loop_text(loop_text(preset, prompt=False), file="x.yml", name="x")
        assert (config is not None) is (preset == COMMAND), preset


def test_an_unknown_preset_is_a_usage_error_naming_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        make_agent(AgentConfig(preset="copilot"))
    assert caught.value.exit_code == 2
    assert "unknown agent preset `copilot`" in str(caught.value)
    assert caught.value.hint == "one of: " + ", ".join(preset_names())
    assert default_credentials("copilot") == ()


@pytest.mark.usefixtures("echo_registered")
def test_a_registered_backend_is_accepted_by_the_schema_and_the_validator() -> None:
    """The schema reads the registry when used: a backend added later is in its enum."""
    schema = json_schema()
    assert preset_enum(schema) == [*("claude", "codex", "aider", "gemini", "command"), "echo"]
    validator = jsonschema.Draft202012Validator(schema)
    document = {"agent": {"preset": "echo", "prompt": "x"}, "goal": {"run": "true"}}
    assert validator.is_valid(document)
    config = load_loop_text(loop_text("echo"), file="x.yml", name="x")
    assert isinstance(make_agent(config.agent), EchoAgent)
    # it is held to the rules of a preset that needs a prompt, and may be given a model
    assert not validator.is_valid({**document, "agent": {"preset": "echo"}})
    config, problems = check_loop_text(loop_text("echo", prompt=False), file="x.yml", name="x")
    assert config is None
    assert [p.message for p in problems] == [
        "agent: needs `prompt` or `prompt_file` when preset is echo"
    ]
    assert validator.is_valid(
        {**document, "agent": {"preset": "echo", "prompt": "x", "model": "m"}}
    )


def test_validating_a_loop_imports_no_agent_backend(tmp_path: Path) -> None:
    """`outloop validate` and `outloop schema` list the presets without importing one."""
    code = (
        "import json, sys\n"
        "from outloop_cli.config.loader import load_loop_text\n"
        "from outloop_cli.config.loop_schema import json_schema\n"
        f"load_loop_text({loop_text('claude')!r}, file='x.yml', name='x')\n"
        "json_schema()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('outloop_cli.agents'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the presets' credentials are data (agents/credentials.py), not a backend
    assert json.loads(done.stdout) == [
        "outloop_cli.agents",
        "outloop_cli.agents.credentials",
        "outloop_cli.agents.registry",
    ]
