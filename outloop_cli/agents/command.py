"""The ``command`` preset: any program, with placeholders filled in its argv."""

from __future__ import annotations

from pathlib import PurePath

from outloop_cli.agents.base import Invocation, TurnContext, base_result, expand, placeholder_values
from outloop_cli.config.model import AgentConfig, CredentialConfig
from outloop_cli.errors import UsageError
from outloop_cli.process.spawn import ProcessResult
from outloop_cli.store.records import AgentResult

# argv[0]s that only run the real agent named by a later argument
_INTERPRETERS = ("python", "python3", "node", "bash", "sh", "ruby", "perl", "uv", "npx", "env")


class CommandAgent:
    def __init__(self, config: AgentConfig) -> None:
        if not config.command:
            raise UsageError("the command preset needs `agent.command`")
        self.config = config
        self.template = (*config.command, *config.args)

    @classmethod
    def default_credentials(cls) -> tuple[CredentialConfig, ...]:
        """None: the program is the loop's own, and so is any credential it asks for."""
        return ()

    @property
    def executable(self) -> str:
        return self.template[0]

    @property
    def label(self) -> str:
        return command_label(self.template)

    def invocation(self, ctx: TurnContext) -> Invocation:
        values = placeholder_values(ctx)
        return Invocation(argv=tuple(expand(part, values) for part in self.template))

    def interpret(self, result: ProcessResult, ctx: TurnContext) -> AgentResult:
        return base_result(result, f"logs/iter-{ctx.iteration:03d}-agent.log")


def command_label(argv: tuple[str, ...]) -> str:
    """A readable name for commit authorship: ``my-agent``, or the module a python -m runs."""
    words = list(argv)
    while words:
        name = PurePath(words[0]).name
        bare = name.split(".")[0] if name.startswith("python") else name
        if bare.rstrip("0123456789.") not in _INTERPRETERS:
            return name
        words = words[1:]
        while words and words[0].startswith("-"):
            flag = words.pop(0)
            if flag == "-m" and words:
                return words[0].rsplit(".", 1)[-1]
    return PurePath(argv[0]).name if argv else "agent"
