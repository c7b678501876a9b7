"""Gemini CLI, headless: prompt on stdin, ``--output-format stream-json``.

Facts this relies on (Gemini CLI 0.61):
- with stdin piped and no ``-p``, it runs one non-interactive turn on stdin;
- ``--output-format stream-json`` prints JSONL events (``init``, ``message``,
  ``tool_use``, ``tool_result``, ``error``) ending in ``result`` with ``status``,
  ``error`` and ``stats`` (``input_tokens``, ``output_tokens``, ``cached``, per-model
  breakdown); no cost, so ``pricing`` prices each model it used when it can;
- exit codes: 0 ok, 1 API or general error, 41 authentication, 42 bad input,
  53 turn limit;
- ``GEMINI_CLI_HOME`` moves its settings and state away from the user's; the
  settings pick API-key auth (``GEMINI_API_KEY``, sent as ``x-goog-api-key`` to
  ``$GOOGLE_GEMINI_BASE_URL``) and turn off usage statistics, telemetry, update
  checks and folder-trust prompts;
- ``--approval-mode yolo`` lets it edit and run commands without asking.
"""

from __future__ import annotations

import json
import re
from typing import Any

from outloop_cli.agents.base import Invocation, TurnContext
from outloop_cli.agents.credentials import GEMINI
from outloop_cli.agents.headless import HeadlessAgent
from outloop_cli.agents.pricing import load_prices, price_for
from outloop_cli.agents.usage import (
    Report,
    as_int,
    classify_api_error,
    field_dict,
    json_objects,
    one_line,
)

SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {
        "enableAutoUpdate": False,
        "enableAutoUpdateNotification": False,
        "checkpointing": {"enabled": False},
    },
    "advanced": {"autoConfigureMemory": False},
}

EXIT_AUTH = 41
_CODE = re.compile(r'"code"\s*:\s*(\d{3})')


class GeminiAgent(HeadlessAgent):
    name = "gemini"
    program = "gemini"
    install_hint = "npm install -g @google/gemini-cli"
    credential = GEMINI
    key_env = "GEMINI_API_KEY"

    def invocation(self, ctx: TurnContext) -> Invocation:
        home = ctx.state_dir / "gemini"
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS, indent=2) + "\n")
        argv = [*self.program_argv, "--output-format", "stream-json", "--approval-mode", "yolo"]
        if self.config.model:
            argv += ["--model", self.config.model]
        argv += self.config.args
        env = {
            "GEMINI_CLI_HOME": str(home),
            # one process, not a relaunched child with a bigger heap
            "GEMINI_CLI_NO_RELAUNCH": "1",
            "GEMINI_TELEMETRY_ENABLED": "false",
        }
        return Invocation(argv=tuple(argv), env=env, stdin=ctx.prompt_text.encode())

    def parse(self, log_text: str, ctx: TurnContext) -> Report:
        return parse_stream(log_text)


def parse_stream(text: str) -> Report:
    report = Report()
    parts: list[str] = []
    tool_uses = 0
    result: dict[str, Any] | None = None
    for event in json_objects(text):
        kind = event.get("type")
        if kind == "init":
            report.found = True
        elif kind == "message" and event.get("role") == "assistant":
            content = event.get("content")
            if isinstance(content, str):
                if not event.get("delta"):
                    parts = []
                parts.append(content)
        elif kind == "tool_use":
            tool_uses += 1
            # a new answer follows the tool's result
            parts = []
        elif kind == "result":
            result = event
    if parts:
        report.final_message = "".join(parts).strip() or None
    if result is None:
        return report
    report.found = True
    report.turns = tool_uses + 1
    stats = field_dict(result, "stats")
    report.input_tokens = as_int(stats.get("input_tokens"))
    report.output_tokens = as_int(stats.get("output_tokens"))
    report.cached_input_tokens = as_int(stats.get("cached"))
    models = field_dict(stats, "models")
    report.cost_usd = _cost(models)
    if len(models) == 1:
        report.model = next(iter(models))
    if result.get("status") == "error":
        error = field_dict(result, "error")
        message = str(error.get("message") or "error")
        code = _CODE.search(message)
        status = int(code.group(1)) if code else None
        report.error = classify_api_error(message, status)
        report.error_detail = one_line(message)
    return report


def _cost(models: dict[str, Any]) -> float | None:
    """The turn's cost when every model it used has a known price, else None."""
    if not models:
        return None
    table = load_prices()
    total = 0.0
    for name, usage in models.items():
        price = price_for(name, table)
        if price is None or not isinstance(usage, dict):
            return None
        total += price.cost(
            as_int(usage.get("input_tokens")) or 0,
            as_int(usage.get("output_tokens")) or 0,
            as_int(usage.get("cached")) or 0,
        )
    return total
