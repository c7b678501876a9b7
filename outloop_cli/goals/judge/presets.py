"""How each judge preset is called: read-only tools, no shell, structured output where it exists.

Facts this relies on (the CLIs' own ``--help`` at the versions CI pins):

- Claude Code 2.1: ``-p`` reads the prompt on stdin; ``--json-schema`` makes the
  model answer through a ``StructuredOutput`` tool, validated, and the
  ``--output-format json`` result carries it as ``structured_output``; ``--tools``
  names the only built-in tools offered (here the read tools), ``--permission-mode
  dontAsk`` denies anything that would ask; ``--bare`` skips hooks, plugins and
  CLAUDE.md discovery (a file the agent planted must not speak to the judge outside
  the data frame), ``--setting-sources user`` reads no project settings, and
  ``--strict-mcp-config`` no MCP server but the (none) given;
- Codex 0.171: ``exec --output-schema FILE`` sends the schema as the response's
  ``json_schema`` format, ``-o FILE`` writes the final message; ``--sandbox
  read-only``; ``features.shell_tool = false`` removes its shell and patch tools
  with a classic-tools model (:data:`CODEX_DEFAULT_MODEL` unless the loop names
  one), so it judges from the prompt; ``project_doc_max_bytes = 0`` reads no
  AGENTS.md of the repository;
- Gemini CLI 0.61: no schema flag, so the final message must be the JSON object
  itself; ``--approval-mode plan`` is its read-only mode, and the settings in its
  own home keep only its read tools (``tools.core``) and stop its walk up the
  directories for ``GEMINI.md`` (``context.memoryBoundaryMarkers: []``; by default it
  climbs to the nearest ``.git``, which for an unsandboxed judge is the user's
  checkout). It reads a workspace's
  ``.gemini/settings.json`` and ``GEMINI.md`` whatever its own settings say
  (its system-settings override is skipped under a world-writable /tmp), so the
  judge's view leaves every such file out (:func:`control_file`);
- ``command``: the loop's program reads the prompt on stdin and prints the verdict
  object, optionally with ``"usage": {"input_tokens", "output_tokens", "cost_usd"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outloop_cli.agents.usage import Report, as_float, as_int, json_objects
from outloop_cli.config.model import JudgeConfig
from outloop_cli.goals.judge.prompt import verdict_schema
from outloop_cli.goals.judge.verdict import VerdictError, from_text

CLAUDE_TOOLS = ("Read", "Glob", "Grep")
CLAUDE_DENIED = ("Bash", "Edit", "MultiEdit", "Write", "NotebookEdit", "WebFetch", "WebSearch")
GEMINI_TOOLS = ("read_file", "read_many_files", "list_directory", "glob", "search_file_content")
# Codex's newer default models reach a shell through a JavaScript `exec` tool that
# `shell_tool = false` leaves in place; this one has the classic tools, which it removes
CODEX_DEFAULT_MODEL = "gpt-5-codex"

# Files and directories a judge CLI would read as its own instructions or settings
# (CLAUDE.md, AGENTS.md, GEMINI.md, .claude/, .codex/, .gemini/, MCP configs): the
# agent wrote them, so they stay out of the judge's view, where they would speak
# outside the data frame. Their changes are still in the diff, framed as data.
CONTROL_NAMES = frozenset(
    {
        "CLAUDE.md", "CLAUDE.local.md", "AGENTS.md", "AGENTS.override.md", "GEMINI.md",
        ".claude", ".codex", ".gemini", ".mcp.json", ".geminiignore",
    }
)  # fmt: skip


def control_file(path: str) -> bool:
    """Whether ``path`` (repo-relative) is, or lies in, one a judge CLI takes as its own."""
    return any(part in CONTROL_NAMES for part in path.split("/"))


@dataclass(frozen=True)
class JudgeCall:
    """The command line and environment that ask a judge once."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    """What one judge process said: its answer (a JSON value) and its usage."""

    value: Any = None
    # why no value could be read (then ``value`` is None)
    error: str | None = None
    report: Report = field(default_factory=Report)


def program(config: JudgeConfig) -> str:
    """The executable that must be on PATH."""
    if config.command:
        return config.command[0]
    return config.preset


def call(config: JudgeConfig, state_dir: Path, count: int) -> JudgeCall:
    """The command line of one judgment with its own, fresh state in ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    schema = json.dumps(verdict_schema(count))
    model = ["--model", config.model] if config.model else []
    if config.preset == "claude":
        from outloop_cli.agents.claude import OFFLINE_ENV

        argv = (
            "claude", "-p", "--bare", "--output-format", "json", "--json-schema", schema,
            "--tools", ",".join(CLAUDE_TOOLS), "--disallowedTools", ",".join(CLAUDE_DENIED),
            "--permission-mode", "dontAsk", "--setting-sources", "user", "--strict-mcp-config",
            "--no-session-persistence", *model,
        )  # fmt: skip
        env = {**OFFLINE_ENV, "CLAUDE_CONFIG_DIR": str(state_dir / "claude")}
        return JudgeCall(argv, env)
    if config.preset == "codex":
        return _codex(config, state_dir, schema)
    if config.preset == "gemini":
        return _gemini(config, state_dir, model)
    assert config.command is not None
    return JudgeCall(tuple(config.command))


def _codex(config: JudgeConfig, state_dir: Path, schema: str) -> JudgeCall:
    from outloop_cli.agents.codex import DEFAULT_BASE_URL, PROVIDER_ID

    home = state_dir / "codex"
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"model = {json.dumps(config.model or CODEX_DEFAULT_MODEL)}"]
    lines += [
        f'model_provider = "{PROVIDER_ID}"',
        'approval_policy = "never"',
        'sandbox_mode = "read-only"',
        "check_for_update_on_startup = false",
        "project_doc_max_bytes = 0",
        "",
        f"[model_providers.{PROVIDER_ID}]",
        'name = "outloop access proxy"',
        f"base_url = {json.dumps(DEFAULT_BASE_URL)}",
        'env_key = "OPENAI_API_KEY"',
        'wire_api = "responses"',
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[features]",
        "plugins = false",
        "shell_tool = false",
        # sub-agents and goals are tools a judge has no use for
        "multi_agent = false",
        "goals = false",
        "",
    ]
    (home / "config.toml").write_text("\n".join(lines))
    schema_file = state_dir / "verdict.schema.json"
    schema_file.write_text(schema)
    tmp = state_dir / "codex-tmp"
    tmp.mkdir(exist_ok=True)
    # the proxy's URL is only known when the judge starts: passed on as a -c override
    wrapper = (
        f'exec "$0" "$@" -c "model_providers.{PROVIDER_ID}.base_url=\\"'
        f'${{OPENAI_BASE_URL:-{DEFAULT_BASE_URL}}}\\"" -'
    )
    argv = (
        "sh", "-c", wrapper, "codex", "exec", "--json", "--sandbox", "read-only",
        "--skip-git-repo-check", "--ephemeral", "--output-schema", str(schema_file),
        "-o", str(state_dir / "answer.json"),
    )  # fmt: skip
    return JudgeCall(argv, {"CODEX_HOME": str(home), "TMPDIR": str(tmp)})


def _gemini(config: JudgeConfig, state_dir: Path, model: list[str]) -> JudgeCall:
    from outloop_cli.agents.gemini import SETTINGS

    home = state_dir / "gemini"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    judge_settings = {
        **SETTINGS,
        "tools": {"core": list(GEMINI_TOOLS)},
        "mcpServers": {},
        # no GEMINI.md from the directories above the view: unsandboxed, they are the
        # user's checkout and home, not the spec ("an empty array disables parent traversal")
        "context": {"memoryBoundaryMarkers": []},
    }
    # its own home's layer; a workspace layer cannot come in: the view holds no `.gemini/`
    (home / ".gemini" / "settings.json").write_text(json.dumps(judge_settings, indent=2) + "\n")
    argv = ("gemini", "--output-format", "stream-json", "--approval-mode", "plan", *model)
    env = {
        "GEMINI_CLI_HOME": str(home),
        "GEMINI_CLI_NO_RELAUNCH": "1",
        "GEMINI_TELEMETRY_ENABLED": "false",
    }
    return JudgeCall(argv, env)


def read_answer(config: JudgeConfig, log_text: str, state_dir: Path) -> Answer:
    """The verdict value and the usage, from what the judge printed (and wrote)."""
    if config.preset == "claude":
        from outloop_cli.agents.claude import parse_stream as parse_claude

        report = parse_claude(log_text)
        result = next(
            (e for e in reversed(list(json_objects(log_text))) if e.get("type") == "result"), None
        )
        structured = result.get("structured_output") if result is not None else None
        if structured is None:
            return _failed(report, report.error_detail or "no structured output in its result")
        return Answer(structured, None, report)
    if config.preset == "codex":
        from outloop_cli.agents.codex import parse_events
        from outloop_cli.agents.pricing import price_for

        report = parse_events(log_text)
        report.model = config.model or CODEX_DEFAULT_MODEL
        price = price_for(report.model)
        if price is not None and report.input_tokens is not None:
            report.cost_usd = price.cost(
                report.input_tokens, report.output_tokens or 0, report.cached_input_tokens or 0
            )
        written = state_dir / "answer.json"
        text = written.read_text(errors="replace") if written.exists() else report.final_message
        return _from_text(text, report)
    if config.preset == "gemini":
        from outloop_cli.agents.gemini import parse_stream as parse_gemini

        report = parse_gemini(log_text)
        return _from_text(report.final_message, report)
    return _command_answer(log_text)


def _failed(report: Report, why: str) -> Answer:
    return Answer(None, why, report)


def _from_text(text: str | None, report: Report) -> Answer:
    try:
        return Answer(from_text(text), None, report)
    except VerdictError as exc:
        return _failed(report, report.error_detail or str(exc))


def _command_answer(output: str) -> Answer:
    report = Report()
    # its stderr shares the log: the verdict is the last line that is a JSON object
    objects = list(json_objects(output))
    if not objects:
        return _failed(report, "the judge printed no JSON object")
    value: Any = objects[-1]
    if isinstance(value, dict) and isinstance(value.get("usage"), dict):
        usage = value["usage"]
        report.input_tokens = as_int(usage.get("input_tokens"))
        report.output_tokens = as_int(usage.get("output_tokens"))
        report.cost_usd = as_float(usage.get("cost_usd"))
        value = {k: v for k, v in value.items() if k != "usage"}
    report.found = True
    return Answer(value, None, report)
