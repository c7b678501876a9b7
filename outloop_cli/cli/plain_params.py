"""Typer's value coercion for plain ``str`` and ``Path`` parameters, without pydantic.

typer (0.29) coerces every non-flag parameter through a pydantic
``TypeAdapter``, built when the parameter is first processed: the first
option of any command imports pydantic, a tenth of a second before the
command does anything. For a ``str``, a ``Path``, lists of them and a flag's
``bool``, what the adapter does is fixed and small (a CLI value is already a
string; pydantic's ``Path`` is ``Path(value)``; a flag is already a bool), so
``install()`` has typer build such parameters a coercion that does exactly
that (``Path`` values still go through typer's own path checks).
Numbers, choices, files and anything with a ``parser`` keep typer's adapter:
their error messages are pydantic's. (One difference: a path that
fails typer's checks is named as ``Path`` spells it, ``a/b`` for ``a//b/``.) ``tests/cli/test_plain_params.py``
compares both coercions on every parameter of the app.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.core
from typer import _coercion
from typer._click import _compat
from typer._coercion import RuntimeParam
from typer._param_types import coerce_cli_path, lenient_issubclass
from typer._typing import get_args, get_origin


def _as_str(value: Any) -> str:
    """What typer's ``str`` adapter makes of a command-line value."""
    if isinstance(value, bytes):
        encoding = _compat._get_argv_encoding()
        try:
            return value.decode(encoding)
        except UnicodeError:
            fs_encoding = sys.getfilesystemencoding()
            if fs_encoding != encoding:
                try:
                    return value.decode(fs_encoding)
                except UnicodeError:
                    return value.decode("utf-8", "replace")
            return value.decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """Coercion of one plain parameter (or a list of them) as typer's adapter does it."""

    # what typer resolved for the parameter: its own coercion is built from it if needed
    descriptor: Any = None

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        annotation: Any = self.annotation
        if get_origin(annotation) is list:
            (item_type,) = get_args(annotation)
            items = value if isinstance(value, (list, tuple)) else [value]
            return [self._coerce_one(item_type, item, param, ctx) for item in items]
        return self._coerce_one(annotation, value, param, ctx)

    def _coerce_one(self, annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
        if annotation is str:
            return _as_str(value)
        if annotation is bool:
            if isinstance(value, bool):
                return value
            # a flag's value from elsewhere ("yes", "0"): pydantic's rules and messages
            return _typer_runtime_param(self.descriptor)._coerce_value(value, param, ctx)
        path_type = self.parameter_info.path_type or annotation
        if not isinstance(value, path_type):
            value = path_type(value)
        return coerce_cli_path(
            value, self.parameter_info, path_type=path_type, param=param, ctx=ctx
        )


def _plain(annotation: Any) -> bool:
    return annotation in (str, bool) or lenient_issubclass(annotation, Path)


def is_plain(descriptor: Any) -> bool:
    """Does typer's adapter for this parameter only turn a string into a ``str`` or ``Path``?"""
    info = descriptor.parameter_info
    if info.parser is not None or descriptor.file_annotation is not None:
        return False
    if info.path_type not in (None, Path):
        return False
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        args = get_args(annotation)
        return len(args) == 1 and args[0] is not bool and _plain(args[0])
    return _plain(annotation)


_typer_runtime_param = _coercion.build_runtime_param


def runtime_param(descriptor: Any) -> RuntimeParam:
    """typer's ``build_runtime_param``, answering plain parameters without pydantic."""
    if is_plain(descriptor):
        return PlainRuntimeParam(
            parameter_info=descriptor.parameter_info,
            annotation=descriptor.annotation,
            descriptor=descriptor,
        )
    return _typer_runtime_param(descriptor)


def install() -> None:
    """Have typer build its parameters' coercion here, for every command of this process."""
    # typer.core calls the name it imported from typer._coercion
    setattr(typer.core, "build_runtime_param", runtime_param)  # noqa: B010
