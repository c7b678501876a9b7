"""The agent presets on faithful fake CLIs: command lines, environments, reports, error kinds.

Each fake prints its tool's real output format (captured from the real CLIs
against the scripted model server); the presets run them through the real
process seam, exactly as the engine does, and read what they printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outloop_cli.agents.base import TurnContext
from outloop_cli.agents.headless import HeadlessAgent
from outloop_cli.agents.pricing import BUILTIN_PRICES, load_prices, price_for, prices_path
from outloop_cli.agents.registry import default_credentials, make_agent
from outloop_cli.config.model import AgentConfig
from outloop_cli.credentials.broker import key_variable
from outloop_cli.errors import ConfigError, CouldNotRun
from outloop_cli.process.environment import build_env
from outloop_cli.process.spawn import run_streamed
from outloop_cli.store.records import AgentResult
from tests.conftest import RepoFactory
from tests.support.e2e import AGENTS, PY, run_cli

PROMPT = "Fix the tests.\n" + "x" * 300_000  # longer than any argv may hold
PRESETS = ("claude", "codex", "gemini", "aider")


def context(tmp_path: Path) -> TurnContext:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text(PROMPT)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return TurnContext(
        loop="fix",
        run_id="r1",
        iteration=1,
        workdir=work,
        prompt_text=PROMPT,
        prompt_file=prompt_file,
        state_dir=state,
    )


def fake_agent(preset: str, **config: Any) -> HeadlessAgent:
    agent = make_agent(
        AgentConfig(preset=preset, command=(PY, str(AGENTS / f"fake_cli_{preset}.py")), **config)
    )
    assert isinstance(agent, HeadlessAgent)
    return agent


def run_turn(
    agent: HeadlessAgent, tmp_path: Path, mode: str = "ok"
) -> tuple[AgentResult, dict[str, str]]:
    ctx = context(tmp_path)
    invocation = agent.invocation(ctx)
    env = build_env(extra=[("FAKE_CLI_MODE", mode), *invocation.env.items()])
    result = run_streamed(
        invocation.argv,
        cwd=ctx.workdir,
        env=env,
        log_path=tmp_path / "agent.log",
        stdin_data=invocation.stdin,
        timeout=60,
    )
    return agent.interpret(result, ctx), env


@pytest.mark.parametrize("preset", PRESETS)
def test_prompt_and_key_stay_out_of_argv(preset: str, tmp_path: Path) -> None:
    agent = fake_agent(preset)
    invocation = agent.invocation(context(tmp_path))
    assert not any(PROMPT[:40] in part for part in invocation.argv)
    # the base URL and the sentinel key are the broker's to set, never the preset's ...
    assert agent.credential.env not in invocation.env
    assert agent.key_env not in invocation.env
    # ... and the broker puts the sentinel where this agent reads its key
    assert agent.credential.env is not None
    assert key_variable(agent.credential.env) == agent.key_env
    assert default_credentials(preset) == (agent.credential,)


def test_each_preset_brings_its_providers_credential() -> None:
    claude, codex, aider, gemini = (
        default_credentials(p)[0] for p in ("claude", "codex", "aider", "gemini")
    )
    assert (claude.name, claude.upstream, claude.env, claude.header, claude.scheme) == (
        "anthropic", "https://api.anthropic.com", "ANTHROPIC_BASE_URL", "x-api-key", "",
    )  # fmt: skip
    assert codex == aider
    assert (codex.name, codex.env, codex.header, codex.scheme) == (
        "openai", "OPENAI_BASE_URL", "Authorization", "Bearer",
    )  # fmt: skip
    assert (gemini.name, gemini.env, gemini.header) == (
        "gemini", "GOOGLE_GEMINI_BASE_URL", "x-goog-api-key",
    )  # fmt: skip
    assert default_credentials("command") == ()


def test_claude_turn_is_parsed_from_its_result_event(tmp_path: Path) -> None:
    result, env = run_turn(fake_agent("claude", model="claude-sonnet-4-5"), tmp_path)
    assert result.error is None
    assert (result.turns, result.input_tokens, result.output_tokens) == (3, 1200, 150)
    assert result.cost_usd == pytest.approx(0.0123)
    assert result.final_message == f"edited ({len(PROMPT)} chars of prompt)"
    for name in (
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "DISABLE_TELEMETRY",
        "DISABLE_AUTOUPDATER",
    ):
        assert env[name] == "1"
    assert env["CLAUDE_CONFIG_DIR"].startswith(str(tmp_path))


def test_codex_turn_is_priced_from_the_table(tmp_path: Path) -> None:
    agent = fake_agent("codex")
    result, _ = run_turn(agent, tmp_path)
    assert result.error is None
    assert (result.turns, result.input_tokens, result.output_tokens) == (2, 10000, 500)
    # the model comes from Codex's session file; 4000 of the input tokens were cached
    assert result.cost_usd == pytest.approx(BUILTIN_PRICES["gpt-5-codex"].cost(10000, 500, 4000))
    argv = (tmp_path / "state" / "codex" / "argv.txt").read_text().splitlines()
    assert argv[:2] == ["exec", "--json"]
    assert argv[-1] == "-"
    assert 'model_providers.outloop.base_url="https://api.openai.com/v1"' in argv
    config = (tmp_path / "state" / "codex" / "config.toml").read_text()
    for line in (
        "check_for_update_on_startup = false",
        "plugins = false",
        'wire_api = "responses"',
        'env_key = "OPENAI_API_KEY"',
    ):
        assert line in config


def test_codex_base_url_is_read_when_the_turn_starts(tmp_path: Path) -> None:
    agent = fake_agent("codex")
    ctx = context(tmp_path)
    invocation = agent.invocation(ctx)
    env = build_env(extra=[*invocation.env.items(), ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")])
    run_streamed(
        invocation.argv, cwd=ctx.workdir, env=env, log_path=tmp_path / "a.log", stdin_data=b"x"
    )
    argv = (tmp_path / "state" / "codex" / "argv.txt").read_text().splitlines()
    assert 'model_providers.outloop.base_url="http://127.0.0.1:9/v1"' in argv


def test_gemini_turn_is_parsed_and_priced(tmp_path: Path) -> None:
    result, env = run_turn(fake_agent("gemini"), tmp_path)
    assert result.error is None
    assert (result.turns, result.input_tokens, result.output_tokens) == (2, 2000, 100)
    assert result.final_message == "All done."
    assert result.cost_usd == pytest.approx(BUILTIN_PRICES["gemini-2.5-flash"].cost(2000, 100))
    settings = (Path(env["GEMINI_CLI_HOME"]) / ".gemini" / "settings.json").read_text()
    assert '"usageStatisticsEnabled": false' in settings


def test_aider_turn_is_read_from_its_analytics_log(tmp_path: Path) -> None:
    result, env = run_turn(fake_agent("aider", model="openai/gpt-4.1"), tmp_path)
    assert result.error is None
    assert (result.turns, result.input_tokens, result.output_tokens) == (2, 4846, 100)
    assert result.cost_usd == pytest.approx(0.010472)
    cache = Path(env["HOME"]) / ".aider" / "caches" / "model_prices_and_context_window.json"
    assert cache.read_text().strip() not in ("", "{}")
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


EXPECTED_ERRORS = {
    "auth": "auth",
    "rate_limit": "rate_limit",
    "crash": "crash",
    "malformed": "malformed",
}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("mode", list(EXPECTED_ERRORS))
def test_failures_are_classified(preset: str, mode: str, tmp_path: Path) -> None:
    result, _ = run_turn(fake_agent(preset), tmp_path, mode)
    assert result.error == EXPECTED_ERRORS[mode], result
    assert not result.ok
    if mode in ("auth", "rate_limit"):
        assert result.final_message, "the agent's own words on what failed"


def test_claude_permission_denials_are_their_own_error(tmp_path: Path) -> None:
    result, _ = run_turn(fake_agent("claude"), tmp_path, "permission")
    assert result.error == "permission"
    assert result.cost_usd == pytest.approx(0.0123)


def test_a_timeout_wins_over_the_report(tmp_path: Path) -> None:
    agent = make_agent(AgentConfig(preset="claude", command=("sh", "-c", "sleep 30")))
    assert isinstance(agent, HeadlessAgent)
    ctx = context(tmp_path)
    invocation = agent.invocation(ctx)
    result = run_streamed(
        invocation.argv, cwd=ctx.workdir, env=build_env(extra=invocation.env.items()),
        log_path=tmp_path / "a.log", stdin_data=invocation.stdin, timeout=0.5,
    )  # fmt: skip
    assert agent.interpret(result, ctx).error == "timeout"


@pytest.mark.parametrize("preset", PRESETS)
def test_a_missing_agent_says_how_to_install_it(preset: str) -> None:
    agent = make_agent(AgentConfig(preset=preset))
    assert isinstance(agent, HeadlessAgent)
    with pytest.raises(CouldNotRun) as caught:
        agent.require_installed("/nonexistent")
    assert caught.value.exit_code == 3
    assert "install" in (caught.value.hint or "")
    assert agent.install_hint in (caught.value.hint or "")


def test_user_prices_override_and_extend_the_table() -> None:
    path = prices_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "models:\n  gpt-5-codex: {input: 2.0, output: 20.0}\n  local-llm: {input: 0, output: 0.5}\n"
    )
    table = load_prices()
    assert table["gpt-5-codex"].cost(1_000_000, 0) == pytest.approx(2.0)
    assert price_for("openai/local-llm-2026-01", table) == table["local-llm"]
    assert price_for("unknown-model", table) is None


def test_a_bad_prices_file_names_the_file_and_key() -> None:
    path = prices_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("models:\n  gpt-5: {input: cheap}\n")
    with pytest.raises(ConfigError) as caught:
        load_prices()
    rendered = caught.value.render()
    assert str(path) in rendered
    assert "models.gpt-5" in rendered


def test_outloop_run_with_a_missing_agent_exits_3(make_repo: RepoFactory) -> None:
    loop = "agent:\n  preset: gemini\n  prompt: fix it\ngoal:\n  run: 'false'\n"
    repo = make_repo({".outloop/fix.yml": loop})
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 3, done.stderr
    assert "gemini" in done.stderr
    assert "Traceback" not in done.stderr
