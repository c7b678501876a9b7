"""Collection specs: lists, command lines, mappings with free keys, and objects.

An :class:`Obj` is a mapping with a fixed set of keys (its :class:`Field` s),
built into a frozen dataclass; the :class:`Rule` s between its keys (one of,
only with, when…) are in :mod:`~outloop_cli.config.spec_rules`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outloop_cli.config import values as v
from outloop_cli.config.spec import (
    INVALID,
    MAP_TAG,
    MERGE_TAG,
    SEQ_TAG,
    Context,
    JSONSchema,
    KeyPath,
    Spec,
    collection_tag_ok,
    describe,
    quote_keys,
    render_path,
    scalar_kind,
)
from outloop_cli.config.spec_scalars import Enum, Str


@dataclass(frozen=True)
class ListOf(Spec):
    """A list of ``item`` values, as a tuple; optionally non-empty and without repeats."""

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
        if not collection_tag_ok(node, SEQ_TAG, path, ctx):
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


_PROGRAM_HINT = "the first word is the program: a name on PATH or a path, e.g. my-agent"


@dataclass(frozen=True)
class Argv(Spec):
    """A command line: a list of words, or one string split like a shell would (no expansion)."""

    item: Str
    what = "a command (a list of words, or a string)"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        if isinstance(node, ScalarNode) and scalar_kind(node) == "str":
            import shlex  # only for the string form

            if "\x00" in node.value:
                ctx.report(node, path, "contains a NUL character (\\0)", "remove it")
                return INVALID

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
                ctx.report(node, path, "must not be empty", "name the program to run first")
                return INVALID
            if not words[0].strip():
                ctx.report(node, path, "the program name must not be blank", _PROGRAM_HINT)
                return INVALID
            try:
                return tuple(self.item.validate(word) for word in words)
            except v.BadValue as exc:
                ctx.report(node, path, exc.message, exc.hint)
                return INVALID
        words_spec = ListOf(self.item, min_items=1)
        words = words_spec.check(node, path, ctx)
        if words is not INVALID and not words[0].strip():
            ctx.report(
                node.value[0], (*path, 0), "the program name must not be blank", _PROGRAM_HINT
            )
            return INVALID
        return words

    def schema(self) -> JSONSchema:
        as_list = ListOf(self.item, min_items=1).schema()
        # prefixItems takes the first word out of `items`: it must repeat the item's schema
        # and the program's name is not blank: some character that is not a space
        as_list["prefixItems"] = [{"allOf": [self.item.schema(), {"pattern": r"\S"}]}]
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
    if node.tag == MERGE_TAG:
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
        if not collection_tag_ok(node, MAP_TAG, path, ctx):
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
    """One key of an :class:`Obj`: its spec, and the words explaining it in hints and the schema."""

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


@dataclass(frozen=True)
class Seen:
    """The keys of one mapping as found: their nodes, and the values that passed."""

    node: MappingNode
    keys: dict[str, Node]
    value_nodes: dict[str, Node]
    values: dict[str, Any]


class Rule:
    """A rule between the keys of one :class:`Obj`, checked once its keys are read."""

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        raise NotImplementedError

    def schema(self, obj: Obj) -> JSONSchema:
        raise NotImplementedError


@dataclass(frozen=True)
class Obj(Spec):
    """A mapping with a fixed set of keys, built into ``model`` (a frozen dataclass)."""

    model: type[Any]
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    # said after the list of valid keys when a key is unknown, e.g. where such keys go
    unknown_hint: str | None = None
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
        if not collection_tag_ok(node, MAP_TAG, path, ctx):
            return INVALID
        before = len(ctx.problems)
        seen = Seen(node, {}, {}, {})
        merged = False
        for key_node, value_node in node.value:
            key = _key_text(key_node, path, ctx, _where(path))
            if key is None:
                merged = merged or key_node.tag == MERGE_TAG
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
                ctx.report(
                    key_node, (), f"unknown key `{key}` {_where(path)}", self._unknown(key, ctx)
                )
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

    def _unknown(self, key: str, ctx: Context) -> str:
        close = v.suggest(key, [f.name for f in self.fields])
        if close:
            return f"did you mean `{close}`?"
        elsewhere = ctx.key_index().get(key) if ctx.key_index is not None else None
        if elsewhere:
            return f"`{key}` belongs under {quote_keys(elsewhere)}"
        text = "valid keys here: " + ", ".join(f.name for f in self.fields)
        return f"{text}; {self.unknown_hint}" if self.unknown_hint else text

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


def index_keys(root: Obj) -> dict[str, tuple[str, ...]]:
    """Where each key name is valid under ``root``, e.g. ``max_iterations`` → ``("limits",)``."""
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

    walk(root, "")
    return {key: tuple(places) for key, places in found.items()}
