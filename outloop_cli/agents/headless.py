"""What the named agent presets share: command line, proxy wiring, turning reports into records."""

from __future__ import annotations

import shutil
from typing import ClassVar

from outloop_cli.agents import credentials
from outloop_cli.agents.base import Invocation, TurnContext, base_result
from outloop_cli.agents.usage import Report, read_log
from outloop_cli.config.model import AgentConfig, CredentialConfig
from outloop_cli.errors import CouldNotRun
from outloop_cli.process.spawn import ProcessResult
from outloop_cli.store.records import AgentResult

# Both codex and aider talk to OpenAI's API (SPEC §2: their default credential is `openai`).
OPENAI_CREDENTIAL = credentials.OPENAI

# Errors that come from the process itself, not from the agent's report.
_PROCESS_ERRORS = ("timeout", "idle", "cancelled")


class HeadlessAgent:
    """A coding-agent CLI run once per turn, non-interactively, in the worktree.

    Subclasses say how to call their tool (``arguments``, ``environment``) and
    how to read its report (``parse``); this class handles the parts every
    preset shares: ``agent.command`` overriding the executable, ``agent.args``,
    the provider credential, and the mapping from process + report to record.
    """

    name: ClassVar[str]
    program: ClassVar[str]
    install_hint: ClassVar[str]
    # the provider API this agent talks to, reached through the access proxy
    credential: ClassVar[CredentialConfig]
    # the variable the agent reads its API key from. The broker, not the preset,
    # puts the sentinel there when it wires the proxy; a preset never sets it, so
    # a loop without a granted key leaves it to the agent's environment.
    key_env: ClassVar[str]

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    @property
    def label(self) -> str:
        return self.name

    @property
    def executable(self) -> str:
        return self.config.command[0] if self.config.command else self.program

    @property
    def program_argv(self) -> tuple[str, ...]:
        """The agent program, possibly with fixed leading words from ``agent.command``."""
        return self.config.command if self.config.command else (self.program,)

    @classmethod
    def default_credentials(cls) -> tuple[CredentialConfig, ...]:
        """The credential a loop with this preset needs unless it names its own of the same name."""
        return (cls.credential,)

    def require_installed(self, path: str | None) -> None:
        """Raise CouldNotRun, with how to install the agent, when it is not on ``path``."""
        program = self.executable
        if shutil.which(program, path=path) is None:
            raise CouldNotRun(
                f"the {self.name} agent (`{program}`) was not found",
                hint=f"install it with `{self.install_hint}`, or point `agent.command` at it",
            )

    # -- to be filled in by each preset --

    def invocation(self, ctx: TurnContext) -> Invocation:
        raise NotImplementedError

    def parse(self, log_text: str, ctx: TurnContext) -> Report:
        raise NotImplementedError

    # -- shared --

    def interpret(self, result: ProcessResult, ctx: TurnContext) -> AgentResult:
        record = base_result(result, f"logs/iter-{ctx.iteration:03d}-agent.log")
        report = self.parse(read_log(result.log_path), ctx)
        record.turns = report.turns
        record.input_tokens = report.input_tokens
        record.output_tokens = report.output_tokens
        record.cost_usd = report.cost_usd
        record.final_message = report.final_message
        record.error = classify(record.error, result, report)
        if record.error and report.error_detail and not record.final_message:
            record.final_message = report.error_detail
        return record


def classify(process_error: str | None, result: ProcessResult, report: Report) -> str | None:
    """One error kind for the turn: what happened to the process first, then what the agent said."""
    if process_error in _PROCESS_ERRORS:
        return process_error
    if report.error:
        return report.error
    if result.exit_code == 127 and not report.found:
        # a shell wrapper could not find the agent
        return "not_found"
    if process_error is not None:
        # died from a signal, or failed without saying why in its report
        return "crash" if process_error == "crash" or not report.found else "exit"
    if not report.found:
        # exited 0 but left no report: usage, cost and outcome are unknown
        return "malformed"
    return None
