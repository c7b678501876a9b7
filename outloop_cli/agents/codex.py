"""OpenAI Codex CLI, headless: ``codex exec --json -`` with the prompt on stdin.

Facts this relies on (Codex 0.171):
- ``codex exec`` reads the prompt from stdin when given ``-``;
- ``--json`` prints JSONL events: ``thread.started{thread_id}``, ``item.*``,
  and ``turn.completed{usage}`` or ``turn.failed{error}``; it reports tokens but
  no cost, so the cost comes from ``pricing`` for the model it used (read from
  its session file, which names the model even when the user did not);
- a custom provider in ``$CODEX_HOME/config.toml`` (``base_url``, ``env_key``,
  ``wire_api = "responses"``) points it at the access proxy; the built-in
  provider would want a ChatGPT login. The base URL is only known when the
  turn starts (it is the proxy's), so a tiny ``sh`` wrapper passes
  ``$OPENAI_BASE_URL`` on as a ``-c`` override;
- ``check_for_update_on_startup = false``, ``analytics.enabled = false`` and
  ``features.plugins = false`` stop its calls home;
- ``approval_policy = "never"`` with the ``workspace-write`` sandbox lets it edit
  the worktree and run commands there, without network; ``agent.args`` may
  override either (e.g. ``["--sandbox", "danger-full-access"]``). Under
  ``sandbox: bwrap`` its own sandbox (bubblewrap again) cannot nest in
  outloop's, which disables user namespaces inside: it runs with
  ``danger-full-access`` there, contained by outloop's sandbox instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from outloop_cli.agents.base import Invocation, TurnContext
from outloop_cli.agents.headless import OPENAI_CREDENTIAL, HeadlessAgent
from outloop_cli.agents.pricing import price_for
from outloop_cli.agents.usage import (
    Report,
    add,
    as_int,
    classify_api_error,
    field_dict,
    json_objects,
    one_line,
)

PROVIDER_ID = "outloop"
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Runs "$0" "$@" (codex exec ...) with the provider's base URL taken from the
# environment at the moment the turn starts, and "-": the prompt is on stdin.
_WRAPPER = (
    'exec "$0" "$@" -c "model_providers.'
    + PROVIDER_ID
    + '.base_url=\\"${OPENAI_BASE_URL:-'
    + DEFAULT_BASE_URL
    + '}\\"" -'
)


def _toml_string(value: str) -> str:
    return json.dumps(value)


class CodexAgent(HeadlessAgent):
    name = "codex"
    program = "codex"
    install_hint = "npm install -g @openai/codex"
    credential = OPENAI_CREDENTIAL
    key_env = "OPENAI_API_KEY"

    def invocation(self, ctx: TurnContext) -> Invocation:
        home = ctx.state_dir / "codex"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(self._config_toml(contained=ctx.contained))
        program, *fixed = self.program_argv
        argv = ("sh", "-c", _WRAPPER, program, *fixed, "exec", "--json", *self.config.args)
        # Codex will not put its sandbox helper under the temp directory, and a
        # run's state often lives in /tmp (CI, tests): give it a temp dir of its own.
        tmp = ctx.state_dir / "codex-tmp"
        tmp.mkdir(exist_ok=True)
        env = {"CODEX_HOME": str(home), "TMPDIR": str(tmp)}
        return Invocation(argv=argv, env=env, stdin=ctx.prompt_text.encode())

    def _config_toml(self, *, contained: bool) -> str:
        lines = []
        if self.config.model:
            lines.append(f"model = {_toml_string(self.config.model)}")
        lines += [
            f'model_provider = "{PROVIDER_ID}"',
            'approval_policy = "never"',
            # inside outloop's sandbox (its own network, no user namespaces) Codex's own
            # bubblewrap sandbox cannot start; outloop's is the boundary there
            f'sandbox_mode = "{"danger-full-access" if contained else "workspace-write"}"',
            "check_for_update_on_startup = false",
            "",
            f"[model_providers.{PROVIDER_ID}]",
            'name = "outloop access proxy"',
            f"base_url = {_toml_string(DEFAULT_BASE_URL)}",
            f'env_key = "{self.key_env}"',
            'wire_api = "responses"',
            "",
            "[analytics]",
            "enabled = false",
            "",
            "[features]",
            "plugins = false",
            "",
        ]
        return "\n".join(lines)

    def parse(self, log_text: str, ctx: TurnContext) -> Report:
        report = parse_events(log_text)
        if report.model is None:
            report.model = self.config.model or _session_model(
                ctx.state_dir / "codex", report_thread(log_text)
            )
        price = price_for(report.model)
        if price is not None and report.input_tokens is not None:
            report.cost_usd = price.cost(
                report.input_tokens, report.output_tokens or 0, report.cached_input_tokens or 0
            )
        return report


_TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search")


def report_thread(text: str) -> str | None:
    for event in json_objects(text):
        if event.get("type") == "thread.started" and isinstance(event.get("thread_id"), str):
            return str(event["thread_id"])
    return None


def parse_events(text: str) -> Report:
    report = Report()
    last_error: str | None = None
    tool_calls = 0
    for event in json_objects(text):
        kind = event.get("type")
        if kind == "thread.started":
            report.found = True
        elif kind == "turn.completed":
            report.found = True
            # like Claude's num_turns: one model turn per tool round trip, plus the answer
            report.turns = (report.turns or 0) + 1 + tool_calls
            tool_calls = 0
            usage = field_dict(event, "usage")
            report.input_tokens = add(report.input_tokens, as_int(usage.get("input_tokens")))
            report.cached_input_tokens = add(
                report.cached_input_tokens, as_int(usage.get("cached_input_tokens"))
            )
            report.output_tokens = add(report.output_tokens, as_int(usage.get("output_tokens")))
        elif kind == "turn.failed":
            report.found = True
            error = field_dict(event, "error")
            last_error = str(error.get("message") or "turn failed")
        elif kind == "error" and isinstance(event.get("message"), str):
            if not event["message"].startswith("Reconnecting"):
                last_error = event["message"]
        elif kind == "item.completed":
            item = field_dict(event, "item")
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                report.final_message = item["text"]
            elif item.get("type") in _TOOL_ITEMS:
                tool_calls += 1
    if last_error is not None and not _completed_after_error(text):
        report.error = classify_api_error(last_error, _status_in(last_error))
        report.error_detail = one_line(last_error)
    return report


def _completed_after_error(text: str) -> bool:
    """A transient error the turn recovered from is no error of the turn."""
    completed = failed = -1
    for index, event in enumerate(json_objects(text)):
        if event.get("type") == "turn.completed":
            completed = index
        elif event.get("type") in ("turn.failed", "error"):
            failed = index
    return completed > failed


def _status_in(message: str) -> int | None:
    marker = "unexpected status "
    if marker in message:
        return (
            as_int(int(digits)) if (digits := message.split(marker, 1)[1][:3]).isdigit() else None
        )
    return None


def _session_model(home: Path, thread_id: str | None) -> str | None:
    """The model Codex used, from its session file (it is not in the --json events)."""
    if thread_id is None:
        return None
    sessions = home / "sessions"
    if not sessions.is_dir():
        return None
    for path in sessions.rglob(f"*{thread_id}*.jsonl"):
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                for _, line in zip(range(50), f, strict=False):
                    for event in json_objects(line):
                        payload = event.get("payload")
                        if isinstance(payload, dict) and isinstance(payload.get("model"), str):
                            return str(payload["model"])
        except OSError:
            return None
    return None
