"""A declarative spec for YAML files: one declaration gives the validator and the JSON Schema.

A file's keys are declared once, as :class:`Spec` values (see
:mod:`~outloop_cli.config.spec_scalars`, :mod:`~outloop_cli.config.spec_collections`
and the rules between keys in :mod:`~outloop_cli.config.spec_rules`). Two things
are derived from each declaration:

* the validator: :meth:`Spec.check` walks a YAML node tree (composed, so every
  value still knows its line and column), reports every problem it finds in a
  :class:`Context` and builds the frozen dataclasses the declaration names;
* :meth:`Spec.schema`, its JSON Schema (draft 2020-12) for editors.

Nothing here knows a particular file: the loop file is declared in
:mod:`~outloop_cli.config.loop_schema`, the policy file in
:mod:`~outloop_cli.config.policy_schema`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outloop_cli.errors import Problem

KeyPath = tuple["str | int", ...]
JSONSchema = dict[str, Any]
# A fixed set of names, or a function asked each time: a registry that grows (a plugin,
# a test's backend) is then seen by the validator and the JSON Schema alike.
Names = Sequence[str] | Callable[[], Sequence[str]]

_YAML_TAG = "tag:yaml.org,2002:"
MAP_TAG = f"{_YAML_TAG}map"
SEQ_TAG = f"{_YAML_TAG}seq"
MERGE_TAG = f"{_YAML_TAG}merge"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Timestamps are read as text: no key wants a date, and `description: 2024-06-01` means text.
_SCALAR_KINDS = {f"{_YAML_TAG}{k}": k for k in ("str", "int", "float", "bool", "null", "timestamp")}
_PLAIN_DATA_HINT = "remove the tag: a loop file holds plain strings, numbers, lists and mappings"


class _Invalid:
    """Marks a value that failed its check; the problem is already reported."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


# `scheme://user:password@` and a bare `user:password@` (as in scp-like git remotes)
_USERINFO_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"`]*@"
    r"|(?<![\w.+-])[\w.+-]*:[^\s/?#@'\"`]*@"
)


def hide_userinfo(text: str) -> str:
    """``https://user:PASSWORD@host`` as ``https://***@host``: a message never repeats a password."""
    return _USERINFO_RE.sub(lambda m: (m.group("scheme") or "") + "***@", text)


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
    """What a check needs besides the node: where to report, and facts about the whole file."""

    file: str
    # the checked file's own name, for values whose rules depend on it (a loop's
    # branch template must give a valid branch name for that loop)
    name: str = ""
    problems: list[Problem] = field(default_factory=list)
    # where each key name is valid in the whole file, e.g. ``max_iterations`` →
    # ``("limits",)``: an unknown key is then told where it belongs. Asked only when
    # a key is unknown, so a valid file never builds the index.
    key_index: Callable[[], Mapping[str, Sequence[str]]] | None = None

    def report(self, node: Node, path: KeyPath, message: str, hint: str | None = None) -> None:
        prefix = f"{render_path(path)}: " if path else ""
        # keys and values from the file land in a terminal: no escape sequences from them
        message = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", prefix + message)
        # a value holding `user:password@` is echoed without the password, whatever key it is at
        message = hide_userinfo(message)
        hint = hide_userinfo(hint) if hint is not None else None
        mark = node.start_mark
        self.problems.append(Problem(self.file, message, mark.line + 1, mark.column + 1, hint))

    def fill_hints(self, since: int, hint: str) -> None:
        """Give ``hint`` to the problems reported since index ``since`` that have none."""
        for index in range(since, len(self.problems)):
            if self.problems[index].hint is None:
                self.problems[index] = dataclasses.replace(self.problems[index], hint=hint)


def names_of(names: Names) -> tuple[str, ...]:
    return tuple(names() if callable(names) else names)


def shorten(text: str, limit: int = 40) -> str:
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
        return repr(shorten(node.value))
    return shorten(node.value)


def _show_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/name`` as it was written: ``!!python/name``."""
    return "!!" + tag[len(_YAML_TAG) :] if tag.startswith(_YAML_TAG) else tag


def report_tag(node: Node, path: KeyPath, ctx: Context) -> None:
    """Report a YAML tag that is not plain data (``!!python/name``, ``!!binary``, ``!custom``)."""
    ctx.report(node, path, f"unsupported YAML tag `{_show_tag(node.tag)}`", _PLAIN_DATA_HINT)


def collection_tag_ok(node: Node, tag: str, path: KeyPath, ctx: Context) -> bool:
    if node.tag == tag:
        return True
    report_tag(node, path, ctx)
    return False


def quote_keys(names: Sequence[str], joiner: str = "or") -> str:
    """```a`, `b` or `c``` for messages."""
    quoted = [f"`{n}`" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {joiner} {quoted[-1]}"


class Spec:
    """The type of one value: how to check a node, and how to say it in JSON Schema."""

    what = "a value"

    def check(self, node: Node, path: KeyPath, ctx: Context) -> Any:
        raise NotImplementedError

    def schema(self) -> JSONSchema:
        raise NotImplementedError

    def default_json(self, value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value


def document_schema(root: Spec, *, schema_id: str, title: str, description: str) -> JSONSchema:
    """A whole file's JSON Schema (draft 2020-12): ``root``'s, under the file's own header."""
    schema: JSONSchema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
        "description": description,
    }
    schema.update(root.schema())
    return schema
