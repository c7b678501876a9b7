"""aider, headless: ``aider --message-file PROMPT --yes-always`` with an analytics log.

Facts this relies on (aider 0.86):
- ``--message-file`` runs one message and exits, so the prompt never meets
  argv limits; ``--yes-always`` answers its questions (it still runs no shell
  command the model suggests);
- it exits 0 even when the model API fails, printing litellm's exception
  (``litellm.AuthenticationError`` …), so errors are read from its output;
- with ``--no-analytics --analytics-log FILE`` nothing is sent, but each model
  call is logged as a ``message_send`` event with ``prompt_tokens``,
  ``completion_tokens`` and ``cost``;
- it downloads model metadata from GitHub unless
  ``~/.aider/caches/model_prices_and_context_window.json`` is fresh (less than
  a day old) and non-empty, and litellm does the same unless
  ``LITELLM_LOCAL_MODEL_COST_MAP=True``: the preset gives aider a private HOME
  with such a file, written at each turn;
- litellm reads the key from ``OPENAI_API_KEY`` and the endpoint from
  ``OPENAI_BASE_URL``;
- it writes a placeholder ``user.name``/``user.email`` into the repository's
  ``.git/config`` when git has no identity, so the private HOME carries one
  (with the user's own ``~/.gitconfig`` included over it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from outloop_cli.agents.base import Invocation, TurnContext
from outloop_cli.agents.headless import OPENAI_CREDENTIAL, HeadlessAgent
from outloop_cli.agents.usage import (
    Report,
    add,
    as_float,
    as_int,
    field_dict,
    json_objects,
    one_line,
)

# Non-empty so aider trusts it; litellm's bundled table supplies the real metadata.
_METADATA_STUB = {"outloop-offline": {"note": "written by outloop so aider stays offline"}}

_LITELLM_ERROR = re.compile(r"litellm\.(\w+Error)\b:?\s*(.*)")
_ERROR_KINDS = {
    "AuthenticationError": "auth",
    "PermissionDeniedError": "auth",
    "RateLimitError": "rate_limit",
}


class AiderAgent(HeadlessAgent):
    name = "aider"
    program = "aider"
    install_hint = (
        "python -m pip install aider-chat  (ideally in its own venv, or `pipx install aider-chat`)"
    )
    credential = OPENAI_CREDENTIAL
    key_env = "OPENAI_API_KEY"

    def invocation(self, ctx: TurnContext) -> Invocation:
        state = ctx.state_dir / "aider"
        home = state / "home"
        caches = home / ".aider" / "caches"
        caches.mkdir(parents=True, exist_ok=True)
        (caches / "model_prices_and_context_window.json").write_text(json.dumps(_METADATA_STUB))
        (home / ".gitconfig").write_text(_gitconfig())
        empty_env = state / "empty.env"
        empty_env.write_text("")
        analytics = self.analytics_log(ctx)
        analytics.unlink(missing_ok=True)
        argv = [
            *self.program_argv,
            "--message-file",
            str(ctx.prompt_file),
            "--yes-always",
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-check-update",
            "--no-show-release-notes",
            "--no-analytics",
            "--analytics-log",
            str(analytics),
            "--no-detect-urls",
            "--no-suggest-shell-commands",
            "--no-show-model-warnings",
            "--no-pretty",
            "--no-fancy-input",
            "--env-file",
            str(empty_env),
            "--chat-history-file",
            str(state / "chat-history.md"),
            "--input-history-file",
            str(state / "input-history.txt"),
        ]
        if self.config.model:
            argv += ["--model", self.config.model]
        argv += self.config.args
        env = {
            "HOME": str(home),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        return Invocation(argv=tuple(argv), env=env)

    def analytics_log(self, ctx: TurnContext) -> Path:
        return ctx.state_dir / "aider" / f"analytics-iter-{ctx.iteration:03d}.jsonl"

    def parse(self, log_text: str, ctx: TurnContext) -> Report:
        try:
            events = self.analytics_log(ctx).read_text(encoding="utf-8", errors="replace")
        except OSError:
            events = ""
        return parse_run(events, log_text)


def _gitconfig() -> str:
    """An identity for aider's private HOME, then the user's own git config over it.

    Without an identity aider writes a placeholder one into the repository's
    .git/config, which outloop rightly refuses as tampering.
    """
    text = "[user]\n\tname = aider via outloop\n\temail = aider@outloop.invalid\n"
    own = Path.home() / ".gitconfig"
    if own.is_file():
        text += f"[include]\n\tpath = {json.dumps(str(own))}\n"
    return text


def parse_run(analytics_text: str, output_text: str) -> Report:
    report = Report()
    for event in json_objects(analytics_text):
        # aider logs "exit" when it finishes on its own; without it, it died
        if event.get("event") in ("exit", "message_send"):
            report.found = True
        if event.get("event") != "message_send":
            continue
        props = field_dict(event, "properties")
        report.turns = (report.turns or 0) + 1
        report.input_tokens = add(report.input_tokens, as_int(props.get("prompt_tokens")))
        report.output_tokens = add(report.output_tokens, as_int(props.get("completion_tokens")))
        cost = as_float(props.get("cost"))
        if cost is not None:
            report.cost_usd = (report.cost_usd or 0.0) + cost
    if report.turns is None:
        errors = _LITELLM_ERROR.findall(output_text)
        if errors:
            name, message = errors[-1]
            report.error = _ERROR_KINDS.get(name, "api_error")
            report.error_detail = one_line(f"{name}: {message}")
    return report
