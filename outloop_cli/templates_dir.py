"""Where the bundled templates live, and small readers for them.

The top-level ``templates/`` folder of the repository ships inside the wheel
as ``outloop_cli/templates`` (``force-include`` in pyproject.toml). In an
editable install that copy does not exist and the repository's folder is
used instead.
"""

from __future__ import annotations

import json
import shlex
from importlib import resources
from pathlib import Path

from outloop_cli.errors import CouldNotRun, UsageError

# The only token `outloop init` replaces in a loop template; every other
# brace (``{prompt_file}``, ``{loop}``...) is a config placeholder and stays.
SCHEMA_TOKEN = "{schema_path}"
# Stand for the running Python, the demo agent's script and its table of fixes in the
# demo's loop file; not config placeholders.
PYTHON_TOKEN = "{python}"
DEMO_AGENT_TOKEN = "{demo_agent}"
DEMO_FIXES_TOKEN = "{demo_fixes}"


def templates_root() -> Path:
    """The bundled ``templates`` directory: the wheel's copy, else the repository's."""
    bundled = resources.files("outloop_cli").joinpath("templates")
    if isinstance(bundled, Path) and bundled.is_dir():
        return bundled
    in_repo = Path(__file__).resolve().parent.parent / "templates"
    if in_repo.is_dir():
        return in_repo
    raise CouldNotRun(
        f"outloop's templates are missing (looked in {bundled} and {in_repo})",
        hint="reinstall outloop; a wheel must contain outloop_cli/templates",
    )


def available_presets() -> tuple[str, ...]:
    """The presets that have a starter loop file, sorted."""
    return tuple(sorted(path.stem for path in (templates_root() / "loops").glob("*.yml")))


def loop_template(preset: str) -> str:
    """The starter loop file for ``preset``, with ``{schema_path}`` not yet replaced."""
    presets = available_presets()
    if preset not in presets:
        raise UsageError(
            f"no loop template for preset {preset!r}",
            hint=f"choose one of: {', '.join(presets)}",
        )
    return (templates_root() / "loops" / f"{preset}.yml").read_text(encoding="utf-8")


def demo_dir() -> Path:
    """The demo's folder: ``project/``, ``loop.yml`` and the agent's ``fixes.json``."""
    return templates_root() / "demo"


def demo_project_dir() -> Path:
    """The files of the demo repository (copy them, never edit them in place)."""
    return demo_dir() / "project"


def demo_fixes_file() -> Path:
    """The scripted fixes the demo agent applies, one per bug in the demo project."""
    return demo_dir() / "fixes.json"


def demo_agent_script() -> Path:
    """The demo agent, run as a script (its own directory is all a sandbox must show)."""
    return Path(__file__).resolve().parent / "demo_agent.py"


def render_demo_loop(python: str) -> str:
    """The demo's loop file with ``{python}`` replaced by the interpreter ``python``.

    In ``command`` the token stands for a whole list item and becomes a JSON
    string; in ``goal.run`` it sits inside a double-quoted YAML string and
    becomes the shell-quoted path, escaped for that string. Both are safe for
    any path, spaces, quotes and backslashes included. ``{demo_agent}`` and
    ``{demo_fixes}`` (list items of ``command``) become the script and its table.
    """
    text = (demo_dir() / "loop.yml").read_text(encoding="utf-8")
    text = text.replace(json.dumps(DEMO_AGENT_TOKEN), json.dumps(str(demo_agent_script())))
    text = text.replace(json.dumps(DEMO_FIXES_TOKEN), json.dumps(str(demo_fixes_file())))
    text = text.replace(json.dumps(PYTHON_TOKEN), json.dumps(python))
    return text.replace(PYTHON_TOKEN, json.dumps(shlex.quote(python))[1:-1])


def agency_example_dir() -> Path:
    """``examples/agency-crm-sync``: the wheel's copy, else the repository's."""
    bundled = resources.files("outloop_cli").joinpath("examples").joinpath("agency-crm-sync")
    if isinstance(bundled, Path) and bundled.is_dir():
        return bundled
    in_repo = Path(__file__).resolve().parent.parent / "examples" / "agency-crm-sync"
    if in_repo.is_dir():
        return in_repo
    raise CouldNotRun(
        f"outloop's agency example is missing (looked in {bundled} and {in_repo})",
        hint="reinstall outloop; a wheel must contain outloop_cli/examples",
    )
