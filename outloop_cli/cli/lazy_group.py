"""The root command group: each verb's module is imported when that verb runs, not before.

Building every command (24 modules, their imports, typer inspecting each
signature) was most of the cost of any ``outloop`` invocation. This group
knows the verbs from ``cli/verbs.py`` and builds one only when click asks for
it by name: ``outloop status`` imports ``cli/status.py`` and nothing of the
other verbs. Listing the commands (``--help``) uses each verb's summary from
the table, as click would have shortened the verb's own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from gettext import gettext as _
from typing import Any

import typer
import typer.main
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

from outloop_cli.cli import plain_params
from outloop_cli.cli.verbs import VERBS, help_order


def typer_settings() -> dict[str, Any]:
    """How the app and every verb's typer are made (help and errors alike)."""
    return {
        "add_completion": False,
        "pretty_exceptions_enable": False,
        "rich_markup_mode": None,
    }


def build_verb(verb: str) -> Any:
    """The click command (or group) of one verb, built from its module alone."""
    module = importlib.import_module(f"outloop_cli.cli.{VERBS[verb].module}")
    holder = typer.Typer(**typer_settings())
    # a callback makes the holder a group even when the module registers one command
    holder.callback()(_no_op)
    module.register(holder)
    built = typer.main.get_command(holder)
    command = built.commands.get(verb) if isinstance(built, TyperGroup) else None
    if command is None:
        raise LookupError(f"cli/{VERBS[verb].module}.py registers no `{verb}`")
    return command


def _no_op() -> None:
    """Stands in as the holder's callback; never invoked."""


class _Verbs(Mapping[str, Any]):
    """The group's commands: every verb is a key; a verb's command is built on first access."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, verb: str) -> Any:
        if verb not in VERBS:
            raise KeyError(verb)
        if verb not in self._built:
            self._built[verb] = build_verb(verb)
        return self._built[verb]

    def __iter__(self) -> Iterator[str]:
        return iter(help_order())

    def __len__(self) -> int:
        return len(VERBS)

    def __contains__(self, verb: object) -> bool:
        return verb in VERBS


class VerbGroup(TyperGroup):
    """``outloop``: typer's group, with the verbs of ``cli/verbs.py`` built on demand."""

    def __init__(self, **attrs: Any) -> None:
        plain_params.install()
        super().__init__(**attrs)
        self.commands = _Verbs()  # type: ignore[assignment]

    def list_commands(self, ctx: Any) -> list[str]:
        return help_order()

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # what TyperGroup.format_commands writes, from the table instead of built commands
        shown = [verb for verb in help_order() if not VERBS[verb].hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(verb) for verb in shown)
        rows = [(verb, make_default_short_help(VERBS[verb].summary, limit)) for verb in shown]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)
