"""Errors that reach the user, each carrying where it happened and a hint.

The CLI turns them into exit codes in one place (``outloop_cli.main``);
everything below it raises and never prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_GOAL_NOT_MET = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_RUN = 3
EXIT_INTERRUPTED = 130
# a trigger fired while its loop was still running, or for a fire time already run (sysexits'
# EX_TEMPFAIL: nothing is wrong, try again at the next trigger)
EXIT_SKIPPED = 75


@dataclass(frozen=True)
class Problem:
    """One problem in one file, located as precisely as we know."""

    file: str
    message: str
    line: int | None = None
    col: int | None = None
    hint: str | None = None

    @property
    def where(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def render(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class OutloopError(Exception):
    """Base of every error meant for the user. Subclasses pick the exit code."""

    exit_code = EXIT_COULD_NOT_RUN

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(OutloopError):
    """Bad command-line usage or arguments."""

    exit_code = EXIT_USAGE


class ConfigError(OutloopError):
    """One or more problems in loop or policy files; never raised half-way."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        super().__init__(first.render(), hint=None)

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class CouldNotRun(OutloopError):
    """The run could not start or continue: agent missing, git failure, refused secret."""

    exit_code = EXIT_COULD_NOT_RUN


class GitError(CouldNotRun):
    """A git command failed; carries the command and git's own words."""

    def __init__(self, args: Sequence[str], stderr: str, *, hint: str | None = None) -> None:
        self.git_args = tuple(args)
        self.stderr = stderr.strip()
        message = f"git {' '.join(self.git_args)} failed"
        if self.stderr:
            message += f": {self.stderr}"
        super().__init__(message, hint=hint)


class TriggerSkipped(OutloopError):
    """A triggered start that does not run: recorded in triggers.jsonl, never queued."""

    exit_code = EXIT_SKIPPED
