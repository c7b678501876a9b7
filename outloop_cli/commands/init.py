"""``outloop init``: write a commented starter loop file from the bundled templates."""

from __future__ import annotations

from pathlib import Path

from outloop_cli.commands.schema import schema_path
from outloop_cli.config.model import PRESETS
from outloop_cli.errors import UsageError
from outloop_cli.templates_dir import loop_template
from outloop_cli.workspace import discover


def init_loop(cwd: Path, *, preset: str, name: str, force: bool = False) -> Path:
    if preset not in PRESETS:
        raise UsageError(f"unknown preset `{preset}`", hint="choose one of: " + ", ".join(PRESETS))
    root = discover(cwd).root
    target = root / ".outloop" / f"{name}.yml"
    if target.exists() and not force:
        raise UsageError(
            f"{target} already exists", hint="pick another --name, or --force to overwrite"
        )
    text = loop_template(preset).replace("{schema_path}", str(schema_path()))
    target.parent.mkdir(parents=True, exist_ok=True)
    # exclusive create unless forced, so a concurrent init cannot be clobbered
    with target.open("w" if force else "x", encoding="utf-8") as handle:
        handle.write(text)
    return target
