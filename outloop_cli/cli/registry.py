"""Collecting each verb module's commands for the app (printing is ``cli/terminal.py``'s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outloop_cli.cli.plain_options import for_typer

if TYPE_CHECKING:
    import typer

# every top-level command by name, as its module declared it: what `cli/plain_argv.py` calls
_DECLARED: dict[str, Callable[..., Any]] = {}


def declared_command(name: str) -> Callable[..., Any]:
    """The function a verb module declared as command ``name`` (the module must be imported)."""
    return _DECLARED[name]


class CommandSet:
    """Commands declared in one module, added to the app by ``register``.

    Each verb module owns its commands; ``cli/app.py`` only lists the modules (``VERBS``).
    Importing typer waits for ``group`` or ``register``, so a verb module that
    declares plain options (``cli/plain_options.py``) can be imported without it.
    """

    def __init__(self) -> None:
        self._commands: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
        self._groups: list[tuple[typer.Typer, str]] = []

    def command(
        self, name: str, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self._commands.append((name, func, kwargs))
            _DECLARED[name] = func
            return func

        return decorate

    def group(self, name: str, help: str) -> typer.Typer:
        import typer

        sub = typer.Typer(
            name=name,
            help=help,
            no_args_is_help=True,
            add_completion=False,
            pretty_exceptions_enable=False,
            rich_markup_mode=None,
        )
        self._groups.append((sub, name))
        return sub

    def register(self, app: typer.Typer) -> None:
        for name, func, kwargs in self._commands:
            app.command(name, **kwargs)(for_typer(func))
        for sub, name in self._groups:
            app.add_typer(sub, name=name)
