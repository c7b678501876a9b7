"""Scalar specs: strings, numbers, booleans, names from a set, durations and sizes.

Each reads a YAML scalar the way YAML 1.1 (PyYAML, here) and YAML 1.2 (editors
checking the JSON Schema) agree on, and says so when they would not: ``yes``,
``0x1F``, ``1_000`` and a quoted number are reported with how to write them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yaml.nodes import Node, ScalarNode

from outloop_cli.config import values as v
from outloop_cli.config.spec import (
    INVALID,
    Context,
    JSONSchema,
    KeyPath,
    Names,
    Spec,
    describe,
    names_of,
    report_tag,
    scalar_kind,
    shorten,
)

_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")
# Numbers that YAML 1.1 (PyYAML, here) and YAML 1.2 (editors checking the JSON
# Schema) read alike: no 0x1F, 017, 1_000 or 1:30, whose meaning differs.
_DECIMAL_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_DECIMAL_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?")
# 1e6 is text to YAML 1.1 but a number to YAML 1.2; take it as the number it looks like
_EXPONENT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+")


def _scalar(node: Node, path: KeyPath, ctx: Context, what: str) -> tuple[str, str] | None:
    """(kind, text) of a scalar with a standard tag; reports and returns None otherwise."""
    if not isinstance(node, ScalarNode):
        ctx.report(node, path, f"expected {what}, got {describe(node)}")
        return None
    kind = scalar_kind(node)
    if kind is None:
        report_tag(node, path, ctx)
        return None
    if "\x00" in node.value:
        # only a "\0" escape gets here; argv, env and paths cannot hold one
        ctx.report(node, path, "contains a NUL character (\\0)", "remove it")
        return None
    return kind, node.value


def _unquote_hint(node: Node) -> str:
    """For a number or boolean written as a string: quotes, or an explicit ``!!str``."""
    if isinstance(node, ScalarNode) and node.style in ("'", '"'):
        return "remove the quotes"
    return "remove the `!!str` tag"


def _wrong_kind_hint(kind: str) -> str | None:
    if kind == "null":
        return "give it a value, or remove the key"
    return None


def _number(node: Node, kind: str, text: str) -> int | float | None:
    """The number in a scalar, when YAML 1.1 and 1.2 agree on it; None otherwise."""
    if kind == "int" and _DECIMAL_INT_RE.fullmatch(text):
        return int(text)
    plain = isinstance(node, ScalarNode) and node.style is None
    if (kind == "float" and _DECIMAL_FLOAT_RE.fullmatch(text)) or (
        kind == "str" and plain and _EXPONENT_RE.fullmatch(text)
    ):
        value = float(text)
        return value if math.isfinite(value) else None
    return None


def _numeric_text(text: str) -> bool:
    """Text that would be a number without its quotes."""
    return any(r.fullmatch(text) for r in (_DECIMAL_INT_RE, _DECIMAL_FLOAT_RE, _EXPONENT_RE))


def _not_decimal_hint(kind: str, text: str) -> str | None:
    if kind not in ("int", "float"):
        return None
    if "_" in text:
        return "write the number without '_': YAML 1.2 tools read 1_000 as text"
    return "write the number in plain decimal (0x.., 0o.., 017 and 1:30 read differently in YAML 1.1 and 1.2)"


@dataclass(frozen=True)
class Str(Spec):
    """A string, optionally checked by a function that explains what is wrong with it.

    ``pattern`` is what the JSON Schema checks; when there is no ``check_text``
    it is also what the validator checks.
    """

    what: str = "a string"
    pattern: str | None = None
    check_text: Callable[[str], str] | None = None
    non_blank: bool = False
    hint: str | None = None

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        if kind not in ("str", "timestamp"):
            hint = _wrong_kind_hint(kind) or "quote it to make it a string"
            ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
            return INVALID
        if self.non_blank and not text.strip():
            ctx.report(node, path, "must not be blank")
            return INVALID
        try:
            return self.validate(text)
        except v.BadValue as exc:
            ctx.report(node, path, exc.message, exc.hint)
            return INVALID

    def validate(self, text: str) -> str:
        """The checked (possibly normalised) text; raises BadValue."""
        if self.check_text is not None:
            return self.check_text(text)
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise v.BadValue(f"expected {self.what}, got {shorten(text)!r}", self.hint)
        return text

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "string"}
        if self.pattern is not None:
            out["pattern"] = v.anchored(self.pattern)
        if self.non_blank:
            out["not"] = {"pattern": r"^\s*$"}
        return out


@dataclass(frozen=True)
class Int(Spec):
    """A whole number from ``minimum`` (to ``maximum`` when given); ``3.0`` counts as 3."""

    minimum: int = 1
    maximum: int | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        return f"an integer ≥ {self.minimum}"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        value = _number(node, kind, text)
        # JSON Schema counts 3.0 as an integer; so do we
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if (
            isinstance(value, int)
            and value >= self.minimum
            and (self.maximum is None or value <= self.maximum)
        ):
            return value
        hint = _wrong_kind_hint(kind)
        if kind == "str" and _numeric_text(text):
            hint = _unquote_hint(node)
        elif value is None:
            hint = _not_decimal_hint(kind, text)
        ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
        return INVALID

    def schema(self) -> JSONSchema:
        bounds = {} if self.maximum is None else {"maximum": self.maximum}
        return {"type": "integer", "minimum": self.minimum, **bounds}


@dataclass(frozen=True)
class PositiveNumber(Spec):
    """A number greater than 0, as a float."""

    what = "a number > 0"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        value = _number(node, kind, text)
        if value is not None and value > 0:
            return float(value)
        hint = _wrong_kind_hint(kind)
        if kind == "str" and _numeric_text(text):
            hint = _unquote_hint(node)
        elif value is None:
            hint = hint or _not_decimal_hint(kind, text)
        ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
        return INVALID

    def schema(self) -> JSONSchema:
        return {"type": "number", "exclusiveMinimum": 0}


@dataclass(frozen=True)
class Bool(Spec):
    """``true`` or ``false``; yes/no/on/off are refused, as YAML 1.1 and 1.2 read them apart."""

    what = "true or false"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        if text in _TRUE and kind == "bool":
            return True
        if text in _FALSE and kind == "bool":
            return False
        if kind == "bool":
            # YAML 1.1 reads yes/no/on/off as booleans, YAML 1.2 tools read them as
            # strings: the same file would mean two things (the "Norway problem").
            hint: str | None = (
                "write true or false; yes/no/on/off mean different things to different YAML tools"
            )
        elif kind == "str" and text.lower() in ("true", "false"):
            hint = _unquote_hint(node)
        else:
            hint = _wrong_kind_hint(kind)
        ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
        return INVALID

    def schema(self) -> JSONSchema:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Enum(Spec):
    """One name of a set; ``names`` may be a registry's function, read at each use."""

    names: Names

    @property
    def choices(self) -> tuple[str, ...]:
        return names_of(self.names)

    @property
    def what(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.choices)

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        choices = self.choices
        if kind == "str" and text in choices:
            return text
        close = v.suggest(text, choices) if kind != "null" else None
        hint = f"did you mean `{close}`?" if close else _wrong_kind_hint(kind)
        ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
        return INVALID

    def schema(self) -> JSONSchema:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Duration(Spec):
    """Seconds as a float. With ``zero_is_off``, 0 means "no limit" and gives None."""

    zero_is_off: bool = False
    what = "a duration"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        raw: str | int | float | None = _number(node, kind, text)
        if raw is None and kind == "str":
            raw = text
        if raw is None:
            hint = _wrong_kind_hint(kind) or _not_decimal_hint(kind, text) or v.DURATION_HINT
            ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
            return INVALID
        try:
            seconds = v.parse_duration(raw)
        except v.BadValue as exc:
            ctx.report(node, path, exc.message, exc.hint)
            return INVALID
        if seconds == 0:
            if self.zero_is_off:
                return None
            ctx.report(node, path, "a duration must be more than 0", v.DURATION_HINT)
            return INVALID
        return seconds

    def schema(self) -> JSONSchema:
        if self.zero_is_off:
            number: JSONSchema = {"type": "number", "minimum": 0}
            pattern = v.DURATION_PATTERN
        else:
            number = {"type": "number", "exclusiveMinimum": 0}
            pattern = v.POSITIVE_DURATION_PATTERN
        # the year's cap is checked on numbers only: a regex cannot compare values
        number["maximum"] = v.MAX_DURATION
        return {
            "anyOf": [number, {"type": "string", "pattern": v.anchored(pattern)}],
            "examples": ["90s", "15m", "1h30m"],
        }

    def default_json(self, value: Any) -> Any:
        return v.format_duration(value)


@dataclass(frozen=True)
class Size(Spec):
    """Bytes as an int: a whole number, or one with a unit (``500KB``, ``5MiB``); at least 1."""

    what = "a size"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        number = _number(node, kind, text)
        raw: str | int | float | None = number
        if isinstance(number, float) and number.is_integer():
            raw = int(number)
        if raw is None and kind == "str":
            raw = text
        if raw is None or isinstance(raw, float):
            hint = _wrong_kind_hint(kind) or v.SIZE_HINT
            if number is None:
                hint = _not_decimal_hint(kind, text) or hint
            ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
            return INVALID
        try:
            size = v.parse_size(raw)
        except v.BadValue as exc:
            ctx.report(node, path, exc.message, exc.hint)
            return INVALID
        if size < 1:
            ctx.report(node, path, "a size must be at least 1 byte", v.SIZE_HINT)
            return INVALID
        return size

    def schema(self) -> JSONSchema:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": v.anchored(v.POSITIVE_SIZE_PATTERN)},
            ],
            "examples": ["500KB", "5MiB"],
        }

    def default_json(self, value: Any) -> Any:
        return v.format_size(value)


@dataclass(frozen=True)
class EnvValue(Spec):
    """An environment value: strings as they are, numbers and booleans as written.

    ``LEVEL: 010`` gives ``010`` and ``COUNTRY: NO`` gives ``NO``: the text in
    the file, not what YAML 1.1 would make of it.
    """

    what = "a string or number"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        if kind == "null":
            ctx.report(
                node, path, f"expected {self.what}, got {describe(node)}", 'write "" for empty'
            )
            return INVALID
        return text

    def schema(self) -> JSONSchema:
        return {"type": ["string", "number", "boolean"]}
