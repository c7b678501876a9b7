"""Options and arguments declared without typer, so a verb's module imports no typer.

Importing typer (and the click it ships) costs about as much as starting
Python again. The verbs people and scripts call most often and that take
only plain options (``status``, ``validate``) declare their parameters with
:class:`PlainOption` and :class:`PlainArgument` in ``Annotated`` hints
instead of ``typer.Option``. Two readers see the same declaration:

- typer, when it builds the command (``--help``, shell completion, any
  command line the plain reader leaves to it): :func:`for_typer` hands it a
  copy of the function whose hints carry the ``typer.Option`` /
  ``typer.Argument`` each marker stands for, so help, errors and docs are
  typer's own;
- ``cli/plain_argv.py``, which parses the common command lines of such a verb
  without importing typer at all.

A marker takes only what both readers understand (names and help); a verb
that needs more (envvars, callbacks, choices, numbers) keeps ``typer.Option``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Union


class PlainOption:
    """``typer.Option(*decls, help=...)``, recorded without typer."""

    __slots__ = ("decls", "help")

    def __init__(self, *decls: str, help: str) -> None:
        if not decls or not all(d.startswith("-") for d in decls):
            raise ValueError(f"an option is named by its flags, got {decls!r}")
        self.decls = decls
        self.help = help

    def for_typer(self) -> Any:
        import typer

        return typer.Option(*self.decls, help=self.help)

    def __repr__(self) -> str:
        return f"PlainOption{self.decls!r}"


class PlainArgument:
    """``typer.Argument(help=...)``, recorded without typer."""

    __slots__ = ("help",)

    def __init__(self, *, help: str) -> None:
        self.help = help

    def for_typer(self) -> Any:
        import typer

        return typer.Argument(help=self.help)

    def __repr__(self) -> str:
        return "PlainArgument()"


PLAIN_MARKERS = (PlainOption, PlainArgument)


def markers_of(hint: Any) -> tuple[Any, list[Any]]:
    """``(base type, metadata)`` of an ``Annotated`` hint; ``(hint, [])`` otherwise."""
    if typing.get_origin(hint) is Union:
        # Python 3.10's get_type_hints wraps the hint of a parameter whose default is
        # None in Optional[...], Annotated and all; 3.11 no longer does
        args = typing.get_args(hint)
        annotated = [arg for arg in args if typing.get_origin(arg) is Annotated]
        if len(args) == 2 and type(None) in args and len(annotated) == 1:
            hint = annotated[0]
    if typing.get_origin(hint) is Annotated:
        base, *metadata = typing.get_args(hint)
        return base, metadata
    return hint, []


def for_typer(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as typer must see it: every plain marker replaced by typer's own.

    A function without markers is returned as it is. Otherwise the result is
    a copy (same code, defaults and docstring) whose hints are evaluated
    objects, so the module's own function keeps its markers for the plain
    reader.
    """
    hints = typing.get_type_hints(func, include_extras=True)
    translated: dict[str, Any] = {}
    changed = False
    for name, hint in hints.items():
        base, metadata = markers_of(hint)
        if any(isinstance(item, PLAIN_MARKERS) for item in metadata):
            changed = True
            metadata = [
                item.for_typer() if isinstance(item, PLAIN_MARKERS) else item for item in metadata
            ]
            # a subscript, not Annotated.__class_getitem__, which 3.13 no longer has
            arguments = (base, *metadata)
            hint = Annotated[arguments]
        translated[name] = hint
    if not changed:
        return func
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__doc__ = func.__doc__
    copy.__module__ = func.__module__
    copy.__qualname__ = func.__qualname__
    copy.__annotations__ = translated
    copy.__dict__.update(func.__dict__)
    return copy
