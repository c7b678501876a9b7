"""``outloop validate``: one ``file:line:col: message`` line per problem, then a verdict.

Its options are plain (``cli/plain_options.py``): editors and pre-commit hooks
call it on every save, and the common command lines run without typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from outloop_cli.cli.plain_options import PlainArgument, PlainOption
from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err

_commands = CommandSet()
register = _commands.register


@_commands.command("validate")
def validate_command(
    files: Annotated[
        list[Path] | None, PlainArgument(help="Loop files (default: every .outloop/*.yml).")
    ] = None,
    start: Annotated[
        str,
        PlainOption(
            "--from",
            help="The commit a run would start from: files a loop names "
            "(prompt_file, ca_bundle) must be in it.",
        ),
    ] = "HEAD",
) -> int:
    """Check loop files; print file:line:col: message for every problem."""
    from outloop_cli.commands.validate import validate

    checked, problems = validate(Path.cwd(), files or [], start=start)
    for problem in problems:
        err(problem.render())
    if not checked:
        err("no loop files found in .outloop/ (create one with `outloop init`)")
        return 2
    if problems:
        files_with = len({p.file for p in problems})
        err(f"{len(problems)} problem(s) in {files_with} of {len(checked)} file(s)")
        return 2
    err(f"{len(checked)} loop file(s) OK")
    return 0
