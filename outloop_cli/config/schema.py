"""The loop file's schema, declared once.

Every key of ``.outloop/<loop>.yml`` is a :class:`Field` below, with its type,
description and rules. Two things are derived from that one declaration:

* the validator: :meth:`Spec.check` walks a YAML node tree (composed, so every
  value still knows its line and column), reports every problem it finds and
  builds the frozen dataclasses of :mod:`outloop_cli.config.model`;
* :func:`json_schema`, a JSON Schema (draft 2020-12) for editors.

Defaults are not repeated here: they are read from the model's dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outloop_cli.config import model as m
from outloop_cli.config import values as v
from outloop_cli.errors import Problem

KeyPath = tuple["str | int", ...]
JSONSchema = dict[str, Any]

_TAG = "tag:yaml.org,2002:"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Timestamps are read as text: no key wants a date, and `description: 2024-06-01` means text.
_SCALAR_KINDS = {f"{_TAG}{k}": k for k in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP_TAG = f"{_TAG}map"
_SEQ_TAG = f"{_TAG}seq"
_MERGE_TAG = f"{_TAG}merge"
_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")
# Numbers that YAML 1.1 (PyYAML, here) and YAML 1.2 (editors checking the JSON
# Schema) read alike: no 0x1F, 017, 1_000 or 1:30, whose meaning differs.
_DECIMAL_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_DECIMAL_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?")
# 1e6 is text to YAML 1.1 but a number to YAML 1.2; take it as the number it looks like
_EXPONENT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+")


class _Invalid:
    """Marks a value that failed its check; the problem is already reported."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


def render_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Context:
    """What a check needs besides the node: where to report, and the loop's name."""

    file: str
    loop: str
    problems: list[Problem] = field(default_factory=list)

    def report(self, node: Node, path: KeyPath, message: str, hint: str | None = None) -> None:
        prefix = f"{render_path(path)}: " if path else ""
        # keys and values from the file land in a terminal: no escape sequences from them
        message = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", prefix + message)
        mark = node.start_mark
        self.problems.append(Problem(self.file, message, mark.line + 1, mark.column + 1, hint))

    def fill_hints(self, since: int, hint: str) -> None:
        """Give ``hint`` to the problems reported since index ``since`` that have none."""
        for index in range(since, len(self.problems)):
            if self.problems[index].hint is None:
                self.problems[index] = dataclasses.replace(self.problems[index], hint=hint)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scalar_kind(node: ScalarNode) -> str | None:
    """``str``, ``int``, ``float``, ``bool``, ``null`` or ``timestamp``; None for other tags."""
    return _SCALAR_KINDS.get(node.tag)


def describe(node: Node) -> str:
    """How a value reads in a message: ``'ten'``, ``0``, ``yes``, ``a list``, ``nothing``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    assert isinstance(node, ScalarNode)
    kind = scalar_kind(node)
    if kind == "null":
        return "nothing" if node.value == "" else "null"
    if kind in ("str", "timestamp", None):
        return repr(_shorten(node.value))
    return _shorten(node.value)


def _scalar(node: Node, path: KeyPath, ctx: Context, what: str) -> tuple[str, str] | None:
    """(kind, text) of a scalar with a standard tag; reports and returns None otherwise."""
    if not isinstance(node, ScalarNode):
        ctx.report(node, path, f"expected {what}, got {describe(node)}")
        return None
    kind = scalar_kind(node)
    if kind is None:
        ctx.report(
            node,
            path,
            f"unsupported YAML tag `{_show_tag(node.tag)}`",
            "remove the tag: a loop file holds plain strings, numbers, lists and mappings",
        )
        return None
    if "\x00" in node.value:
        # only a "\0" escape gets here; argv, env and paths cannot hold one
        ctx.report(node, path, "contains a NUL character (\\0)", "remove it")
        return None
    return kind, node.value


def _show_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/name`` as it was written: ``!!python/name``."""
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _collection_tag_ok(node: Node, tag: str, path: KeyPath, ctx: Context) -> bool:
    if node.tag == tag:
        return True
    ctx.report(
        node,
        path,
        f"unsupported YAML tag `{_show_tag(node.tag)}`",
        "remove the tag: a loop file holds plain strings, numbers, lists and mappings",
    )
    return False


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


# --- value specs -------------------------------------------------------------------


class Spec:
    """The type of one value: how to check a node, and how to say it in JSON Schema."""

    what = "a value"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        raise NotImplementedError

    def schema(self) -> JSONSchema:
        raise NotImplementedError

    def default_json(self, value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value


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
            raise v.BadValue(f"expected {self.what}, got {_shorten(text)!r}", self.hint)
        return text

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "string"}
        if self.pattern is not None:
            out["pattern"] = v.anchored(self.pattern)
        if self.non_blank:
            out["not"] = {"pattern": r"^\s*$"}
        return out


@dataclass(frozen=True)
class Branch(Spec):
    """The branch template: its placeholders, and the branch name it gives for this loop."""

    what = "a branch name template"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        return Str(self.what, check_text=lambda t: v.check_branch_template(t, ctx.loop)).check(
            node, path, ctx
        )

    def schema(self) -> JSONSchema:
        return {"type": "string", "pattern": v.anchored(v.BRANCH_TEMPLATE_PATTERN)}


@dataclass(frozen=True)
class Int(Spec):
    minimum: int = 1

    @property
    def what(self) -> str:  # type: ignore[override]
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
        if isinstance(value, int) and value >= self.minimum:
            return value
        hint = _wrong_kind_hint(kind)
        if kind == "str" and _numeric_text(text):
            hint = _unquote_hint(node)
        elif value is None:
            hint = _not_decimal_hint(kind, text)
        ctx.report(node, path, f"expected {self.what}, got {describe(node)}", hint)
        return INVALID

    def schema(self) -> JSONSchema:
        return {"type": "integer", "minimum": self.minimum}


@dataclass(frozen=True)
class PositiveNumber(Spec):
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
    choices: tuple[str, ...]

    @property
    def what(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.choices)

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        scalar = _scalar(node, path, ctx, self.what)
        if scalar is None:
            return INVALID
        kind, text = scalar
        if kind == "str" and text in self.choices:
            return text
        close = v.suggest(text, self.choices) if kind != "null" else None
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


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec
    min_items: int = 0
    unique: bool = False
    empty_hint: str | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        return "a list"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(node, SequenceNode):
            hint = None
            if isinstance(node, ScalarNode) and scalar_kind(node) == "str":
                hint = f"write a list: [{node.value!r}]"
            ctx.report(node, path, f"expected a list, got {describe(node)}", hint)
            return INVALID
        if not _collection_tag_ok(node, _SEQ_TAG, path, ctx):
            return INVALID
        if len(node.value) < self.min_items:
            ctx.report(node, path, "must not be empty", self.empty_hint)
            return INVALID
        items: list[Any] = []
        seen: set[Any] = set()
        ok = True
        for index, child in enumerate(node.value):
            value = self.item.check(child, (*path, index), ctx)
            if value is INVALID:
                ok = False
            elif self.unique and value in seen:
                ctx.report(
                    child, (*path, index), f"{value!r} is listed twice", "remove the repetition"
                )
                ok = False
            else:
                seen.add(value)
                items.append(value)
        return tuple(items) if ok else INVALID

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "array", "items": self.item.schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.unique:
            out["uniqueItems"] = True
        return out


@dataclass(frozen=True)
class Argv(Spec):
    """A command line: a list of words, or one string split like a shell would (no expansion)."""

    item: Str
    what = "a command (a list of words, or a string)"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        if isinstance(node, ScalarNode) and scalar_kind(node) == "str":
            import shlex  # only for the string form

            try:
                words = shlex.split(node.value)
            except ValueError as exc:
                ctx.report(
                    node,
                    path,
                    f"cannot split {describe(node)} into words: {exc}",
                    'write a list instead: ["my-agent", "--flag", "{prompt_file}"]',
                )
                return INVALID
            if not words:
                ctx.report(node, path, "must not be empty")
                return INVALID
            try:
                return tuple(self.item.validate(word) for word in words)
            except v.BadValue as exc:
                ctx.report(node, path, exc.message, exc.hint)
                return INVALID
        words_spec = ListOf(self.item, min_items=1)
        words = words_spec.check(node, path, ctx)
        if words is not INVALID and not words[0]:
            ctx.report(node.value[0], (*path, 0), "the program name must not be empty")
            return INVALID
        return words

    def schema(self) -> JSONSchema:
        as_list = ListOf(self.item, min_items=1).schema()
        # prefixItems takes the first word out of `items`: it must repeat the item's schema
        as_list["prefixItems"] = [{**self.item.schema(), "minLength": 1}]
        as_string = self.item.schema()
        as_string["not"] = {"pattern": r"^\s*$"}
        return {"oneOf": [as_string, as_list]}


def _key_text(node: Node, path: KeyPath, ctx: Context, where: str) -> str | None:
    """The text of a mapping key, or None (reported) for keys that cannot be ours."""
    if not isinstance(node, ScalarNode):
        ctx.report(
            node,
            (),
            f"keys must be plain words, got {describe(node)} {where}",
            "a key is a name such as `agent` or `timeout`",
        )
        return None
    if node.tag == _MERGE_TAG:
        ctx.report(
            node,
            (),
            f"merge keys (<<) are not supported {where}",
            "write the keys out, or reuse a whole value with an alias (*name)",
        )
        return None
    return str(node.value)


def _flow(value: Any) -> str:
    """A default as it would be written in the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def _where(path: KeyPath) -> str:
    return f"in `{render_path(path)}`" if path else "at the top level"


def _first_line(node: Node) -> int:
    return int(node.start_mark.line) + 1


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping with free keys: env variables, credentials by name.

    With ``pairs`` the result is a sorted tuple of (key, value); otherwise the
    values in file order, each told its key through ``key_into`` when given.
    """

    key: Str
    value: Spec
    pairs: bool = False
    key_into: str | None = None
    what = "a mapping"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(node, MappingNode):
            ctx.report(node, path, f"expected a mapping, got {describe(node)}")
            return INVALID
        if not _collection_tag_ok(node, _MAP_TAG, path, ctx):
            return INVALID
        before = len(ctx.problems)
        seen: dict[str, Node] = {}
        out: list[tuple[str, Any]] = []
        for key_node, value_node in node.value:
            key = _key_text(key_node, path, ctx, _where(path))
            if key is None:
                continue
            if key in seen:
                ctx.report(
                    key_node,
                    path,
                    f"duplicate key `{key}` (first at line {_first_line(seen[key])})",
                    "YAML keeps only the last one; remove one of them",
                )
                continue
            seen[key] = key_node
            try:
                self.key.validate(key)
            except v.BadValue as exc:
                ctx.report(key_node, path, exc.message, exc.hint)
                continue
            if isinstance(self.value, Obj) and self.key_into:
                value = self.value.check(value_node, (*path, key), ctx, {self.key_into: key})
            else:
                value = self.value.check(value_node, (*path, key), ctx)
            out.append((key, value))
        if len(ctx.problems) > before:
            return INVALID
        if self.pairs:
            return tuple(sorted(out))
        return tuple(value for _, value in out)

    def schema(self) -> JSONSchema:
        return {
            "type": "object",
            "propertyNames": self.key.schema(),
            "additionalProperties": self.value.schema(),
        }


@dataclass(frozen=True)
class Field:
    name: str
    spec: Spec
    description: str
    required: bool = False
    # null is accepted and gives None (e.g. `max_time: null` for no time limit)
    nullable: bool = False
    # a value to show in hints, as YAML (flow style, one line)
    example: str | None = None

    def hint(self, default: Any = None) -> str:
        """What to tell a user who got this key wrong: what it is, and a value that works."""
        text = self.description
        if self.example is not None:
            text += f" Example: `{self.name}: {self.example}`."
        elif default is not None and default != ():
            text += f" Default: `{self.name}: {_flow(self.spec.default_json(default))}`."
        return text

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        if self.nullable and isinstance(node, ScalarNode) and scalar_kind(node) == "null":
            return None
        return self.spec.check(node, path, ctx)


# --- rules between keys of one mapping -----------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The keys of one mapping as found: their nodes, and the values that passed."""

    node: MappingNode
    keys: dict[str, Node]
    value_nodes: dict[str, Node]
    values: dict[str, Any]


def _keys(names: Sequence[str], joiner: str = "or") -> str:
    quoted = [f"`{n}`" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {joiner} {quoted[-1]}"


class Rule:
    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        raise NotImplementedError

    def schema(self, obj: Obj) -> JSONSchema:
        raise NotImplementedError


@dataclass(frozen=True)
class Exclusive(Rule):
    """At most one of ``keys``."""

    keys: tuple[str, ...]

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        present = [k for k in seen.keys if k in self.keys]
        if len(present) > 1:
            ctx.report(
                seen.keys[present[1]],
                path,
                f"{_keys(present, 'and')} exclude each other",
                "keep only one of them",
            )

    def schema(self, obj: Obj) -> JSONSchema:
        pairs = [{"required": list(p)} for p in itertools.combinations(self.keys, 2)]
        return {"not": {"anyOf": pairs}}


@dataclass(frozen=True)
class ExactlyOne(Rule):
    keys: tuple[str, ...]

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        present = [k for k in seen.keys if k in self.keys]
        if not present:
            fields = [f for f in (obj.get_field(k) for k in self.keys) if f is not None]
            ctx.report(
                seen.node,
                path,
                f"needs one of {_keys(self.keys)}",
                " Or: ".join(f.hint() for f in fields) or None,
            )
        elif len(present) > 1:
            ctx.report(
                seen.keys[present[1]],
                path,
                f"{_keys(present, 'and')} exclude each other",
                "keep only one of them",
            )

    def schema(self, obj: Obj) -> JSONSchema:
        return {"oneOf": [{"required": [k]} for k in self.keys]}


@dataclass(frozen=True)
class OnlyWith(Rule):
    """``keys`` make sense only next to ``needs``."""

    keys: tuple[str, ...]
    needs: str
    hint: str | None = None

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        if self.needs in seen.keys:
            return
        for key in self.keys:
            if key in seen.keys:
                ctx.report(
                    seen.keys[key], path, f"`{key}` only applies with `{self.needs}`", self.hint
                )

    def schema(self, obj: Obj) -> JSONSchema:
        # if/then rather than dependentRequired: editors still on draft-07 understand it
        return {
            "allOf": [
                {"if": {"required": [k]}, "then": {"required": [self.needs]}} for k in self.keys
            ]
        }


@dataclass(frozen=True)
class When(Rule):
    """Rules that hold when ``key`` (or its default, when absent) is one of ``values``."""

    key: str
    values: tuple[str, ...]
    require: tuple[str, ...] = ()
    require_one_of: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    refine: Mapping[str, Spec] = field(default_factory=dict)
    hint: str | None = None

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        if self.key in seen.values:
            actual = seen.values[self.key]
        elif self.key in seen.keys:
            return  # present but invalid: already reported, nothing to conclude
        else:
            actual = obj.defaults().get(self.key)
        if actual not in self.values:
            return
        condition = f"{self.key} is {actual}"
        for key in self.require:
            if key not in seen.keys:
                required = obj.get_field(key)
                hint = self.hint or (required.hint() if required else None)
                ctx.report(seen.node, path, f"missing `{key}`, needed when {condition}", hint)
        if self.require_one_of and not any(k in seen.keys for k in self.require_one_of):
            ctx.report(
                seen.node, path, f"needs {_keys(self.require_one_of)} when {condition}", self.hint
            )
        for key in self.forbid:
            if key in seen.keys:
                ctx.report(
                    seen.keys[key],
                    path,
                    f"`{key}` does not apply when {condition}",
                    obj.applies_hint(self.key, key),
                )
        for key, spec in self.refine.items():
            if key in seen.values:
                spec.check(seen.value_nodes[key], (*path, key), ctx)

    def schema(self, obj: Obj) -> JSONSchema:
        condition: JSONSchema = {"properties": {self.key: {"enum": list(self.values)}}}
        if obj.defaults().get(self.key) not in self.values:
            condition["required"] = [self.key]
        then: JSONSchema = {}
        if self.require:
            then["required"] = list(self.require)
        if self.require_one_of:
            then["anyOf"] = [{"required": [k]} for k in self.require_one_of]
        properties: JSONSchema = dict.fromkeys(self.forbid, False)
        properties.update({k: spec.schema() for k, spec in self.refine.items()})
        if properties:
            then["properties"] = properties
        return {"if": condition, "then": then}


@dataclass(frozen=True)
class Obj(Spec):
    """A mapping with a fixed set of keys, built into ``model`` (a frozen dataclass)."""

    model: type[Any]
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    what = "a mapping"

    def get_field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def defaults(self) -> dict[str, Any]:
        return {
            f.name: f.default
            for f in dataclasses.fields(self.model)
            if f.default is not dataclasses.MISSING
        }

    def applies_hint(self, key: str, forbidden: str) -> str:
        """``host only applies with via: git``, from every When rule on ``key``."""
        spec = self.get_field(key)
        choices = spec.spec.choices if spec and isinstance(spec.spec, Enum) else ()
        allowed = [
            c
            for c in choices
            if not any(
                isinstance(r, When) and r.key == key and c in r.values and forbidden in r.forbid
                for r in self.rules
            )
        ]
        if not allowed:
            return f"remove `{forbidden}`"
        choices_text = (
            ", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1 else allowed[0]
        )
        return f"`{forbidden}` only applies with {key}: {choices_text}"

    def check(
        self,
        node: Node,
        path: KeyPath,
        ctx: Context,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        if not isinstance(node, MappingNode):
            ctx.report(node, path, f"expected a mapping, got {describe(node)}")
            return INVALID
        if not _collection_tag_ok(node, _MAP_TAG, path, ctx):
            return INVALID
        before = len(ctx.problems)
        seen = Seen(node, {}, {}, {})
        merged = False
        for key_node, value_node in node.value:
            key = _key_text(key_node, path, ctx, _where(path))
            if key is None:
                merged = merged or key_node.tag == _MERGE_TAG
                continue
            if key in seen.keys:
                ctx.report(
                    key_node,
                    (),
                    f"duplicate key `{key}` {_where(path)} "
                    f"(first at line {_first_line(seen.keys[key])})",
                    "YAML keeps only the last one; remove one of them",
                )
                continue
            seen.keys[key] = key_node
            seen.value_nodes[key] = value_node
            spec = self.get_field(key)
            if spec is None:
                ctx.report(key_node, (), f"unknown key `{key}` {_where(path)}", self._unknown(key))
                continue
            since = len(ctx.problems)
            value = spec.check(value_node, (*path, key), ctx)
            if len(ctx.problems) > since:
                ctx.fill_hints(since, spec.hint(self.defaults().get(key)))
            if value is not INVALID:
                seen.values[key] = value
        if merged:
            # the merged keys are unknown: saying which are missing would mislead
            return INVALID
        for f in self.fields:
            if f.required and f.name not in seen.keys:
                hint = f.hint()
                if isinstance(f.spec, Enum):
                    hint = f"add `{f.name}: {f.spec.choices[0]}` ({f.spec.what})"
                ctx.report(node, path, f"missing required key `{f.name}`", hint)
        for rule in self.rules:
            rule.check(self, seen, path, ctx)
        if len(ctx.problems) > before:
            return INVALID
        return self.model(**seen.values, **(extra or {}))

    def _unknown(self, key: str) -> str:
        close = v.suggest(key, [f.name for f in self.fields])
        if close:
            return f"did you mean `{close}`?"
        elsewhere = key_index().get(key)
        if elsewhere:
            return f"`{key}` belongs under {_keys(elsewhere)}"
        return "valid keys here: " + ", ".join(f.name for f in self.fields)

    def schema(self) -> JSONSchema:
        defaults = self.defaults()
        properties: JSONSchema = {}
        for f in self.fields:
            prop = f.spec.schema()
            if f.nullable:
                prop = {"anyOf": [prop, {"type": "null"}]}
            prop["description"] = f.description
            default = defaults.get(f.name)
            if default is not None and default != ():
                prop["default"] = f.spec.default_json(default)
            properties[f.name] = prop
        out: JSONSchema = {"type": "object", "properties": properties}
        required = [f.name for f in self.fields if f.required]
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        if self.rules:
            out["allOf"] = [r.schema(self) for r in self.rules]
        return out


# --- the loop file ------------------------------------------------------------------

ENV_NAME = Str("an environment variable name", v.ENV_NAME_PATTERN, v.check_env_name)
REPO_PATH = Str("a repo-relative path", v.REPO_PATH_PATTERN, v.check_repo_path)
TEMPLATE = Str(
    "a string with placeholders",
    v.template_pattern(m.PLACEHOLDERS),
    functools.partial(v.check_template, names=m.PLACEHOLDERS),
)
ENV = MapOf(ENV_NAME, EnvValue(), pairs=True)
PASS_ENV = ListOf(ENV_NAME, unique=True)
_PLACEHOLDER_DOC = ", ".join(f"{{{p}}}" for p in m.PLACEHOLDERS)

AGENT = Obj(
    m.AgentConfig,
    (
        Field(
            "preset",
            Enum(m.PRESETS),
            "Which agent runs each turn; `command` runs any program given in `command`.",
            required=True,
        ),
        Field(
            "command",
            Argv(TEMPLATE),
            "The agent's command line (a list, or a string split like a shell would). "
            f"Required with preset `command`; replaces a preset's program otherwise. "
            f"Placeholders: {_PLACEHOLDER_DOC}; write {{{{ and }}}} for literal braces.",
            example='["my-agent", "--task-file", "{prompt_file}"]',
        ),
        Field(
            "prompt",
            Str(non_blank=True),
            "The task, as text. Use this or `prompt_file`.",
            example='"Make the failing tests pass."',
        ),
        Field(
            "prompt_file",
            REPO_PATH,
            "The task, in a file of the repository (read from the starting commit).",
            example="PROMPT.md",
        ),
        Field(
            "model",
            Str(non_blank=True),
            "The model the preset asks its agent to use.",
            example="claude-sonnet-4-5",
        ),
        Field(
            "args",
            ListOf(TEMPLATE),
            f"Extra arguments appended to the preset's command line. Placeholders: {_PLACEHOLDER_DOC}.",
            example='["--verbose"]',
        ),
        Field(
            "timeout",
            Duration(),
            "Time limit of one agent turn; the agent's whole process group is killed after it.",
        ),
        Field(
            "idle_timeout",
            Duration(zero_is_off=True),
            "An agent that prints nothing for this long counts as hung; 0 or null turns it off.",
            nullable=True,
        ),
        Field(
            "env",
            ENV,
            "Non-secret environment variables for the agent. Values are taken as written.",
            example="{LOG_LEVEL: info}",
        ),
        Field(
            "pass_env",
            PASS_ENV,
            "Names of variables passed through from outloop's own environment.",
            example="[HTTPS_PROXY, NO_PROXY]",
        ),
    ),
    (
        Exclusive(("prompt", "prompt_file")),
        When("preset", ("command",), require=("command",), forbid=("model",)),
        When(
            "preset",
            tuple(p for p in m.PRESETS if p != "command"),
            require_one_of=("prompt", "prompt_file"),
            hint="say what the agent should do; only preset `command` may run without a prompt",
        ),
    ),
)

CI = Obj(
    m.CIGoalConfig,
    (
        Field("provider", Enum(m.CI_PROVIDERS), "Where the checks run."),
        Field(
            "repo",
            Str("owner/name", v.CI_REPO_PATTERN, hint="e.g. octo/widgets, or group/sub/project"),
            "The repository whose checks count (`owner/name`; GitLab groups may nest). "
            "Default: from the `origin` remote.",
        ),
        Field(
            "api_url",
            Str("an http(s) URL", v.URL_PATTERN, v.check_url),
            "The API's base URL, for GitHub Enterprise or self-hosted GitLab. "
            "Default: $GITHUB_API_URL, or the public API.",
        ),
        Field(
            "required_checks",
            ListOf(
                Str("a check name", non_blank=True),
                min_items=1,
                unique=True,
                empty_hint="leave `required_checks` out to require every check",
            ),
            "Names of the checks that must pass. Default: every check on the pushed head.",
        ),
        Field("timeout", Duration(), "How long to wait for the checks of one push."),
        Field(
            "grace",
            Duration(),
            "How long to wait for the first check to appear before calling the push unchecked.",
        ),
        Field("poll", Duration(), "How often to ask for the checks at first (it slows down)."),
    ),
    (
        When(
            "provider",
            ("github",),
            refine={
                "repo": Str("owner/name", v.GITHUB_REPO_PATTERN, hint="a GitHub repo is owner/name")
            },
        ),
    ),
)

GOAL = Obj(
    m.GoalConfig,
    (
        Field(
            "run",
            Str("a shell command", non_blank=True),
            "A shell command run in the worktree (`/bin/sh -c`); the goal is met when it exits 0.",
            example="pytest -q",
        ),
        Field(
            "junit",
            REPO_PATH,
            "A JUnit XML file that `run` writes, for pass/fail counts and failing test names.",
            example="reports/junit.xml",
        ),
        Field("timeout", Duration(), "Time limit of one run of the goal command."),
        Field(
            "env",
            ENV,
            "Non-secret environment variables for the goal command.",
            example='{PYTHONHASHSEED: "0"}',
        ),
        Field(
            "pass_env",
            PASS_ENV,
            "Variables passed through to the goal command.",
            example="[DATABASE_URL]",
        ),
        Field(
            "ci",
            CI,
            "Instead of `run`: the goal is met when every (required) CI check on the pushed head is green.",
            example="{provider: github}",
        ),
    ),
    (
        ExactlyOne(("run", "ci")),
        OnlyWith(
            ("junit", "timeout", "env", "pass_env"),
            "run",
            hint="these keys set up `goal.run`; a CI goal has its own `ci.timeout`",
        ),
    ),
)

LIMITS = Obj(
    m.LimitsConfig,
    (
        Field("max_iterations", Int(1), "Stop after this many agent turns."),
        Field(
            "max_time",
            Duration(),
            "Stop after this much time in all; null for no limit.",
            nullable=True,
        ),
        Field(
            "max_cost_usd",
            PositiveNumber(),
            "Stop once the agent reports having spent this much (US dollars).",
            nullable=True,
        ),
        Field(
            "max_tokens",
            Int(1),
            "Stop once the agent reports having used this many tokens.",
            nullable=True,
        ),
        Field(
            "stall",
            Int(1),
            "Stop after this many turns in a row that changed nothing, or failed the same way.",
        ),
        Field(
            "max_agent_errors",
            Int(1),
            "Stop after this many agent failures (non-zero exit, timeout) in a row.",
        ),
    ),
)

COMMIT = Obj(
    m.CommitConfig,
    (
        Field(
            "max_file_size",
            Size(),
            "Files larger than this are left out of iteration commits (bytes, or 500KB, 5MiB…).",
        ),
    ),
)

_PROXY_KEYS = ("upstream", "env", "header", "scheme", "allow", "ca_bundle")
CREDENTIAL = Obj(
    m.CredentialConfig,
    (
        Field(
            "via",
            Enum(m.CREDENTIAL_VIAS),
            "How the agent gets access: a local proxy that adds the key, git's credential "
            "helper, or (discouraged) a short-lived raw token.",
        ),
        Field(
            "upstream",
            Str("an https URL", v.URL_PATTERN, v.check_url),
            "via proxy: the API the proxy forwards to (https; http only for localhost).",
            example="https://api.openai.com",
        ),
        Field(
            "env",
            ENV_NAME,
            "via proxy: the variable that gives the agent the proxy's URL (never the key).",
            example="OPENAI_BASE_URL",
        ),
        Field(
            "header",
            Str(
                "an HTTP header name", v.HTTP_TOKEN_PATTERN, hint="e.g. Authorization or x-api-key"
            ),
            "via proxy: the header that carries the key, e.g. x-api-key.",
        ),
        Field(
            "scheme",
            Str(
                "an auth scheme or an empty string",
                f"(?:{v.HTTP_TOKEN_PATTERN})?",
                hint='e.g. Bearer, or "" to send the bare key',
            ),
            'via proxy: the word before the key in the header; "" sends the bare key.',
        ),
        Field(
            "allow",
            ListOf(
                Str('a "METHOD /path" rule', v.ALLOW_RULE_PATTERN, v.check_allow_rule),
                min_items=1,
                unique=True,
                empty_hint="leave `allow` out to allow every request under `upstream`",
            ),
            'via proxy: the requests that may pass, as "METHOD /path" with * wildcards. '
            "Default: everything under `upstream`.",
        ),
        Field(
            "ca_bundle",
            REPO_PATH,
            "via proxy: CA certificates (PEM, in the repository) for a private upstream.",
        ),
        Field(
            "host",
            Str("a host name", v.HOST_PATTERN, v.check_host),
            "via git: the host whose git credentials this is.",
            example="github.com",
        ),
    ),
    (
        When("via", ("proxy",), require=("upstream", "env"), forbid=("host",)),
        When("via", ("git",), require=("host",), forbid=_PROXY_KEYS),
        When("via", ("helper",), forbid=(*_PROXY_KEYS, "host")),
    ),
)

LOOP = Obj(
    m.LoopConfig,
    (
        Field("description", Str(), "What this loop is for, in a line."),
        Field(
            "agent",
            AGENT,
            "The coding agent that acts each iteration.",
            required=True,
            example='{preset: claude, prompt: "Make the failing tests pass."}',
        ),
        Field(
            "goal",
            GOAL,
            "What must hold for the loop to succeed.",
            required=True,
            example="{run: pytest -q}",
        ),
        Field("limits", LIMITS, "When to give up."),
        Field("commit", COMMIT, "How each iteration is committed."),
        Field(
            "branch",
            Branch(),
            "The scratch branch of a run. Placeholders {loop} and {run}; must contain {run}.",
        ),
        Field(
            "push",
            Bool(),
            "Push the branch after each iteration (outloop pushes, never the agent).",
        ),
        Field(
            "pr",
            Bool(),
            "Open (then update) a pull request from the run's branch; a draft until the goal "
            "is met. Implies `push`.",
        ),
        Field(
            "protect",
            ListOf(Str("a repo-relative glob", v.GLOB_PATTERN, v.check_glob), unique=True),
            "Globs (** allowed) of files the agent must not change; a change stops the run. "
            f"{m.ALWAYS_PROTECTED} is always protected.",
            example='[".github/workflows/**", "tests/**"]',
        ),
        Field(
            "credentials",
            MapOf(
                Str(
                    "a credential name",
                    v.CREDENTIAL_NAME_PATTERN,
                    hint="use lowercase letters, digits, '_' and '-', e.g. openai",
                ),
                CREDENTIAL,
                key_into="name",
            ),
            "Secrets this loop asks for, by name; your policy file decides whether it gets them.",
        ),
        Field(
            "sandbox",
            Enum(m.SANDBOXES),
            "`bwrap` runs the agent in a bubblewrap sandbox that can write only to its worktree; "
            "`none` runs it as it is.",
        ),
    ),
)


@functools.cache
def key_index() -> dict[str, tuple[str, ...]]:
    """Where each key name is valid, e.g. ``max_iterations`` → ``("limits",)``."""
    found: dict[str, list[str]] = {}

    def walk(obj: Obj, prefix: str) -> None:
        for f in obj.fields:
            where = f"{prefix}{f.name}"
            found.setdefault(f.name, []).append(prefix.rstrip(".") or "the top level")
            spec = f.spec
            if isinstance(spec, MapOf) and isinstance(spec.value, Obj):
                walk(spec.value, f"{where}.<name>.")
            elif isinstance(spec, Obj):
                walk(spec, f"{where}.")

    walk(LOOP, "")
    return {key: tuple(places) for key, places in found.items()}


SCHEMA_ID = "https://outloop.dev/schema/loop.json"


def json_schema() -> JSONSchema:
    """The loop file as JSON Schema (draft 2020-12), derived from the same declaration."""
    schema: JSONSchema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "outloop loop (.outloop/<loop>.yml)",
        "description": "One loop: an agent, a goal checked from outside, and limits.",
    }
    schema.update(LOOP.schema())
    return schema
