"""``outloop init``: write a commented starter loop file from the bundled templates."""

from __future__ import annotations

import os
from pathlib import Path

from outloop_cli.agents.registry import preset_names
from outloop_cli.commands.schema import write_repo_schema
from outloop_cli.config.source import loop_file_candidates
from outloop_cli.config.values import loop_name_problem
from outloop_cli.errors import UsageError
from outloop_cli.git.repo import discover
from outloop_cli.templates_dir import SCHEMA_TOKEN, loop_template


def init_loop(cwd: Path, *, preset: str, name: str, force: bool = False) -> Path:
    """Write ``.outloop/<name>.yml`` for ``preset`` at the repository's root; its path."""
    presets = preset_names()
    if preset not in presets:
        raise UsageError(f"unknown preset `{preset}`", hint="choose one of: " + ", ".join(presets))
    problem = loop_name_problem(name)
    if problem:
        raise UsageError(problem, hint="pick another --name, e.g. fix-tests")
    root = discover(cwd).root
    # an existing .yaml of that name is the same loop: overwrite it rather than add a twin
    candidates = [root / rel for rel in loop_file_candidates(name)]
    target = next((path for path in candidates if path.exists()), candidates[0])
    if target.exists() and not force:
        raise UsageError(
            f"{target} already exists", hint="pick another --name, or --force to overwrite"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    text = loop_template(preset).replace(SCHEMA_TOKEN, _schema_reference(root, target))
    # exclusive create unless forced, so a concurrent init cannot be clobbered
    try:
        with target.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError as exc:
        raise UsageError(
            f"{target} already exists", hint="pick another --name, or --force to overwrite"
        ) from exc
    return target


def _schema_reference(root: Path, target: Path) -> str:
    """The committed schema, named relative to the loop file: it resolves on every clone."""
    schema = write_repo_schema(root).path
    return Path(os.path.relpath(schema, target.parent)).as_posix()
