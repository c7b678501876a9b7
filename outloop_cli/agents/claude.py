"""Claude Code, headless: ``claude -p`` with the prompt on stdin and stream-json output.

Facts this relies on (Claude Code 2.1):
- ``-p`` reads the prompt from stdin when none is given on the command line,
  so a long prompt never meets the argv length limit;
- ``--output-format stream-json --verbose`` prints one JSON event per line as the
  turn goes (so the idle timeout sees progress) and ends with a ``result`` event
  carrying ``num_turns``, ``total_cost_usd``, ``usage``, ``is_error``,
  ``api_error_status`` and ``permission_denials``; failed API calls that it
  retries show up as ``system/api_retry`` events with ``error_status``;
- as root, ``--dangerously-skip-permissions`` is refused, so the preset uses
  ``--permission-mode acceptEdits`` plus an allow-list that lets it run the
  project's commands; anything else it tries is denied and reported;
- ``ANTHROPIC_API_KEY`` is sent as ``x-api-key`` to ``$ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

from typing import Any

from outloop_cli.agents.base import Invocation, TurnContext
from outloop_cli.agents.credentials import ANTHROPIC
from outloop_cli.agents.headless import HeadlessAgent
from outloop_cli.agents.usage import (
    Report,
    as_float,
    as_int,
    classify_api_error,
    field_dict,
    json_objects,
    one_line,
)

# Tools the agent may use without asking. WebFetch/WebSearch stay out: a loop is offline.
ALLOWED_TOOLS = (
    "Bash",
    "Edit",
    "MultiEdit",
    "Write",
    "Read",
    "Glob",
    "Grep",
    "LS",
    "NotebookEdit",
    "TodoWrite",
)

# Documented switches that stop everything except model calls.
OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL": "1",
}


class ClaudeAgent(HeadlessAgent):
    name = "claude"
    program = "claude"
    install_hint = "npm install -g @anthropic-ai/claude-code"
    credential = ANTHROPIC
    key_env = "ANTHROPIC_API_KEY"

    def invocation(self, ctx: TurnContext) -> Invocation:
        argv = [
            *self.program_argv,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            ",".join(ALLOWED_TOOLS),
        ]
        if self.config.model:
            argv += ["--model", self.config.model]
        argv += self.config.args
        config_dir = ctx.state_dir / "claude"
        config_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **OFFLINE_ENV,
            # its own settings and session files, not the user's ~/.claude (nor its login)
            "CLAUDE_CONFIG_DIR": str(config_dir),
        }
        return Invocation(argv=tuple(argv), env=env, stdin=ctx.prompt_text.encode())

    def parse(self, log_text: str, ctx: TurnContext) -> Report:
        return parse_stream(log_text)


def parse_stream(text: str) -> Report:
    report = Report()
    result: dict[str, Any] | None = None
    retry_status: int | None = None
    retry_error = ""
    for event in json_objects(text):
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            report.model = event.get("model") if isinstance(event.get("model"), str) else None
        elif kind == "system" and event.get("subtype") == "api_retry":
            retry_status = as_int(event.get("error_status"))
            retry_error = str(event.get("error") or "")
        elif kind == "result":
            result = event
    if result is None:
        if retry_status is not None:
            report.error = classify_api_error(retry_error, retry_status)
            report.error_detail = (
                f"API error {retry_status} ({retry_error}), still retrying when it stopped"
            )
        return report
    report.found = True
    report.turns = as_int(result.get("num_turns"))
    report.cost_usd = as_float(result.get("total_cost_usd"))
    usage = field_dict(result, "usage")
    fresh = as_int(usage.get("input_tokens"))
    created = as_int(usage.get("cache_creation_input_tokens")) or 0
    read = as_int(usage.get("cache_read_input_tokens")) or 0
    if fresh is not None:
        report.input_tokens = fresh + created + read
        report.cached_input_tokens = read
    report.output_tokens = as_int(usage.get("output_tokens"))
    message = result.get("result")
    report.final_message = message if isinstance(message, str) else None
    denials = result.get("permission_denials") or []
    if result.get("is_error"):
        status = as_int(result.get("api_error_status"))
        detail = str(message or result.get("subtype") or "error")
        if status is not None or str(result.get("terminal_reason")) == "api_error":
            report.error = classify_api_error(detail, status)
        else:
            report.error = "exit"
        report.error_detail = one_line(detail)
    elif denials:
        tools = sorted({str(d.get("tool_name")) for d in denials if isinstance(d, dict)})
        report.error = "permission"
        report.error_detail = f"Claude Code was denied: {', '.join(tools)}"
    return report
