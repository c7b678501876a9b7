"""Every verb lives in two modules of one name: ``cli/<verb>.py`` and ``commands/<verb>.py``.

The command tree is walked from the app itself (hidden commands and the
subcommands of groups included), so a verb added anywhere else, or a module
that goes out of step with ``VERBS`` in ``cli/verbs.py``, fails here by name. Each
row's summary, ``group`` and ``hidden`` must be what its module registers: the
root ``--help`` is written from the table without importing the modules.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from outloop_cli.cli.app import VERBS, app

PACKAGE = Path(__file__).resolve().parents[2] / "outloop_cli"
CLI_DIR = PACKAGE / "cli"
COMMANDS_DIR = PACKAGE / "commands"
# cli/ modules that are no verb: the app, the command registry, the live progress view
# and the formatting the verbs share; anything else belongs to a verb
# and the verbs table, the lazily built root group, typer's plain coercion, the
# typer-free root help, and the typer-free options and their command-line reader
HELPERS = {
    "app",
    "registry",
    "terminal",
    "progress",
    "formatting",
    "verbs",
    "lazy_group",
    "plain_params",
    "root_help",
    "plain_options",
    "plain_argv",
    "deferred_modules",
}


def _module_name(verb: str) -> str:
    return VERBS[verb].module


VERB_MODULES = {_module_name(verb) for verb in VERBS}


def _is_group(command: Any) -> bool:
    # typer ships its own copy of click: ask for a group's behaviour, not its class
    return callable(getattr(command, "list_commands", None))


def _subcommands(group: Any, path: str) -> dict[str, Any]:
    """A group's commands, hidden ones included, in the order ``--help`` lists them."""
    ctx = typer.Context(group, info_name=path)
    commands = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in commands.items() if command is not None}


def _top_level() -> dict[str, Any]:
    root = typer.main.get_command(app)
    assert _is_group(root)
    return _subcommands(root, "outloop")


TOP_LEVEL = _top_level()


def _callbacks(command: Any, path: str) -> Iterator[tuple[str, object]]:
    """The function behind a command, or behind every subcommand of a group."""
    if _is_group(command):
        subcommands = _subcommands(command, path)
        assert subcommands, f"`{path}` is a group without commands"
        for name, sub in subcommands.items():
            yield from _callbacks(sub, f"{path} {name}")
    else:
        yield path, command.callback


def _tree(name: str) -> ast.Module:
    path = CLI_DIR / f"{name}.py"
    return ast.parse(path.read_text(), str(path))


def _imported_modules(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _registers_commands(tree: ast.Module) -> bool:
    """Declares commands: builds a ``CommandSet`` or decorates a function with ``.command``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "CommandSet":
                return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr == "command":
                    return True
    return False


def test_the_verbs_table_names_every_command_of_the_app() -> None:
    assert sorted(TOP_LEVEL) == sorted(VERBS)


def test_the_verbs_table_is_in_help_order() -> None:
    # typer lists the commands in the order they were added, then the groups
    groups = [verb for verb in VERBS if _is_group(TOP_LEVEL[verb])]
    commands = [verb for verb in VERBS if verb not in groups]
    assert list(TOP_LEVEL) == commands + groups


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_verb_has_its_cli_and_commands_twin(verb: str) -> None:
    module = _module_name(verb)
    assert module == verb.replace("-", "_") or verb in dir(builtins), (
        f"`{verb}` lives in {module}.py: only a verb that is no usable module name may differ"
    )
    assert module.isidentifier()
    assert module not in dir(builtins), f"importing {module} would shadow the builtin"
    assert (CLI_DIR / f"{module}.py").is_file()
    assert (COMMANDS_DIR / f"{module}.py").is_file(), f"`{verb}` has no commands/{module}.py"
    for path, callback in _callbacks(TOP_LEVEL[verb], f"outloop {verb}"):
        defined_in = getattr(callback, "__module__", None)
        assert defined_in == f"outloop_cli.cli.{module}", f"`{path}` is defined in {defined_in}"
    assert f"outloop_cli.commands.{module}" in _imported_modules(_tree(module)), (
        f"cli/{module}.py does not call into commands/{module}.py"
    )


def test_every_cli_module_that_registers_commands_is_in_the_verbs_table() -> None:
    modules = {path.stem for path in CLI_DIR.glob("*.py")} - {"__init__"}
    registering = {name for name in modules if _registers_commands(_tree(name))}
    # the detector sees every verb module, so it would see a new one too
    assert registering >= VERB_MODULES
    assert registering - VERB_MODULES == set()
    assert modules - VERB_MODULES <= HELPERS, "a cli/ module that is neither a verb nor a helper"


# what verbs share: finding the run a command names (here or in the run index), and
# `outloop run --repo`'s many repositories
COMMAND_HELPERS = {"run_ref", "run_repos"}


def test_every_commands_module_is_the_twin_of_a_verb() -> None:
    modules = {path.stem for path in COMMANDS_DIR.glob("*.py")} - {"__init__"}
    assert modules - COMMAND_HELPERS == VERB_MODULES


def _eager_app() -> Any:
    """The app as it was built before verbs were loaded lazily: every module registered."""
    from outloop_cli.cli.lazy_group import typer_settings
    from outloop_cli.cli.verbs import ROOT_HELP

    eager = typer.Typer(name="outloop", help=ROOT_HELP, no_args_is_help=True, **typer_settings())
    eager.callback()(app.registered_callback.callback)  # type: ignore[union-attr]
    for verb in VERBS.values():
        importlib.import_module(f"outloop_cli.cli.{verb.module}").register(eager)
    return typer.main.get_command(eager)


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_row_says_what_its_module_registers(verb: str) -> None:
    eager = _eager_app()
    ctx = typer.Context(eager, info_name="outloop")
    command = eager.get_command(ctx, verb)
    assert command is not None, f"cli/{VERBS[verb].module}.py registers no `{verb}`"
    first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert VERBS[verb].summary == " ".join(first_paragraph.split())
    assert command.short_help is None, "the listing is made from the summary"
    assert VERBS[verb].group == _is_group(command)
    assert VERBS[verb].hidden == bool(command.hidden)
    lazy = TOP_LEVEL[verb]
    assert lazy.get_help(typer.Context(lazy, info_name=verb)) == command.get_help(
        typer.Context(command, info_name=verb)
    )


def test_the_lazy_root_lists_what_the_eager_app_listed() -> None:
    eager = _eager_app()
    lazy = typer.main.get_command(app)
    for columns in (50, 60, 80, 120):
        width = columns - 2
        assert lazy.get_help(typer.Context(lazy, info_name="outloop", max_content_width=width)) == (
            eager.get_help(typer.Context(eager, info_name="outloop", max_content_width=width))
        )
    assert list(_subcommands(lazy, "outloop")) == list(_subcommands(eager, "outloop"))


def test_a_verb_imports_only_its_own_module() -> None:
    code = (
        "import sys\n"
        "from outloop_cli.main import main\n"
        "main(['status', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('outloop_cli.cli.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    verb_modules = {f"outloop_cli.cli.{verb.module}" for verb in VERBS.values()}
    assert set(loaded) & verb_modules == {"outloop_cli.cli.status"}
