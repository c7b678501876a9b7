"""``outloop <verb> ...`` read without typer, for a verb whose module declares plain options.

Such a verb (``plain=True`` in ``cli/verbs.py``) declares its parameters with
``cli/plain_options.py``'s markers: flags (``bool``), options taking one
value (``str``, ``Path``, optional or not) and a list of positional
arguments. This reader accepts what click would accept for them in the
common forms: ``--opt value``, ``--opt=value``, flags, arguments before,
between and after options. Anything it is not sure of leaves the command
line to typer untouched (``parse`` answers ``None``): ``--help``, an unknown
or repeated option, ``--``, a value that itself starts with ``-``, a missing
value, an argument a verb does not take. Every message and exit code on those
lines is therefore typer's own. ``tests/cli/test_plain_argv.py`` runs both
readers on the same command lines and holds them to the same result.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

from outloop_cli.cli.deferred_modules import defer_rarely_used
from outloop_cli.cli.plain_options import PlainArgument, PlainOption, markers_of
from outloop_cli.cli.registry import declared_command
from outloop_cli.cli.verbs import VERBS

FLAG = "flag"
VALUE = "value"
ARGUMENTS = "arguments"
_CONVERT: dict[Any, Callable[[str], Any]] = {str: str, Path: Path}


class PlainParam:
    """One parameter of a plain verb, as the reader needs it."""

    __slots__ = ("convert", "decls", "default", "kind", "name")

    def __init__(
        self,
        name: str,
        kind: str,
        convert: Callable[[str], Any],
        default: Any,
        decls: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.kind = kind
        self.convert = convert
        self.default = default
        self.decls = decls


def _without_none(hint: Any) -> tuple[Any, bool]:
    """``X`` of ``X | None`` / ``Optional[X]``, and whether ``None`` was allowed."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


_NO_DEFAULT = object()
# CO_VARARGS and CO_VARKEYWORDS (`inspect`'s names for them)
_VARARGS = 0x04
_VARKEYWORDS = 0x08


def _parameters(func: Callable[..., Any]) -> list[tuple[str, Any]]:
    """``(name, default)`` of each named parameter, read from the function's code.

    ``inspect.signature`` would say the same, but importing ``inspect`` is what
    the plain verbs avoid (``cli/deferred_modules.py``). A ``*args``, a
    ``**kwargs`` or a wrapper is no plain verb and is refused by name.
    """
    if not isinstance(func, types.FunctionType) or any(
        hasattr(func, name) for name in ("__wrapped__", "__signature__")
    ):
        # a bound method, a partial, a wrapper or a stated signature: what its code says
        # is not what a caller passes
        raise TypeError(f"{func!r}: a plain verb is a function of its own")
    code = func.__code__
    if code.co_flags & (_VARARGS | _VARKEYWORDS):
        raise TypeError(f"{func.__qualname__}: *args or **kwargs")
    positional = code.co_varnames[: code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    defaults = func.__defaults__ or ()
    keyword_defaults = func.__kwdefaults__ or {}
    first_with_default = len(positional) - len(defaults)
    return [
        (name, defaults[i - first_with_default] if i >= first_with_default else _NO_DEFAULT)
        for i, name in enumerate(positional)
    ] + [(name, keyword_defaults.get(name, _NO_DEFAULT)) for name in keyword_only]


def params_of(func: Callable[..., Any]) -> list[PlainParam]:
    """The plain parameters of ``func``; ``TypeError`` names one this reader cannot take."""
    hints = typing.get_type_hints(func, include_extras=True)
    params: list[PlainParam] = []
    for name, default in _parameters(func):
        base, metadata = markers_of(hints.get(name))
        markers = [item for item in metadata if isinstance(item, (PlainOption, PlainArgument))]
        if len(markers) != 1 or default is _NO_DEFAULT:
            raise TypeError(f"{func.__qualname__}({name}): not one plain marker with a default")
        [marker] = markers
        inner, _ = _without_none(base)
        if isinstance(marker, PlainOption):
            if inner is bool and default is False:
                params.append(PlainParam(name, FLAG, bool, False, marker.decls))
            elif inner in _CONVERT:
                params.append(PlainParam(name, VALUE, _CONVERT[inner], default, marker.decls))
            else:
                raise TypeError(f"{func.__qualname__}({name}): {base!r} is no plain option")
        elif typing.get_origin(inner) is list and typing.get_args(inner)[0] in _CONVERT:
            if any(p.kind == ARGUMENTS for p in params):
                raise TypeError(f"{func.__qualname__}({name}): a second list of arguments")
            convert = _CONVERT[typing.get_args(inner)[0]]
            params.append(PlainParam(name, ARGUMENTS, convert, default))
        else:
            raise TypeError(f"{func.__qualname__}({name}): {base!r} is no plain argument list")
    return params


def parse(params: Sequence[PlainParam], args: Sequence[str]) -> dict[str, Any] | None:
    """The keyword arguments typer would call the verb with, or ``None``: ask typer."""
    by_flag = {decl: param for param in params for decl in param.decls}
    values: dict[str, Any] = {}
    positionals: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-"):
            positionals.append(token)
            continue
        # click reads `--name=value` for long options only (`-x=1` is the value `=1`)
        name, equals, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        param = by_flag.get(name)
        if param is None or param.name in values:
            return None
        if param.kind == FLAG:
            if equals:
                return None
            values[param.name] = True
            continue
        if equals:
            value = inline
        else:
            if i >= len(args) or args[i].startswith("-"):
                return None
            value = args[i]
            i += 1
        values[param.name] = param.convert(value)
    arguments = [param for param in params if param.kind == ARGUMENTS]
    if positionals and not arguments:
        return None
    for param in params:
        if param.kind == ARGUMENTS:
            # typer hands an argument list that got no values its default
            values[param.name] = (
                [param.convert(p) for p in positionals] if positionals else param.default
            )
        elif param.name not in values:
            values[param.name] = param.default
    return values


def plain_call(verb: str, args: Sequence[str]) -> Callable[[], Any] | None:
    """The verb's call for this command line when it needs no typer, else ``None``."""
    row = VERBS.get(verb)
    if row is None or not row.plain:
        return None
    defer_rarely_used()
    importlib.import_module(f"outloop_cli.cli.{row.module}")
    func = declared_command(verb)
    values = parse(params_of(func), args)
    if values is None:
        return None
    return lambda: func(**values)
