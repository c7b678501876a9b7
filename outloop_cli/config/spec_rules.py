"""Rules between the keys of one mapping: at most one, exactly one, only with, and when.

Each rule checks the keys an :class:`~outloop_cli.config.spec_collections.Obj`
found and says the same thing in JSON Schema (``if``/``then``, ``oneOf``, ``not``),
written for draft-07 editors too.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from outloop_cli.config.spec import Context, JSONSchema, KeyPath, Names, Spec, names_of, quote_keys
from outloop_cli.config.spec_collections import Obj, Rule, Seen
from outloop_cli.config.spec_scalars import Enum


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
                f"{quote_keys(present, 'and')} exclude each other",
                "keep only one of them",
            )

    def schema(self, obj: Obj) -> JSONSchema:
        pairs = [{"required": list(p)} for p in itertools.combinations(self.keys, 2)]
        return {"not": {"anyOf": pairs}}


@dataclass(frozen=True)
class ExactlyOne(Rule):
    """Exactly one of ``keys`` (which may be a registry's, read at each use).

    ``alongside`` keys (among ``keys``) may also stand with one of the others: one of
    ``keys`` is still needed, but an ``alongside`` key excludes nothing.
    """

    keys: Names
    alongside: Names = ()

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        keys = names_of(self.keys)
        companions = set(names_of(self.alongside))
        present = [k for k in seen.keys if k in keys]
        sole = [k for k in present if k not in companions]
        if not present:
            fields = [f for f in (obj.get_field(k) for k in keys) if f is not None]
            ctx.report(
                seen.node,
                path,
                f"needs one of {quote_keys(keys)}",
                " Or: ".join(f.hint() for f in fields) or None,
            )
        elif len(sole) > 1:
            ctx.report(
                seen.keys[sole[1]],
                path,
                f"{quote_keys(sole, 'and')} exclude each other",
                "keep only one of them",
            )

    def schema(self, obj: Obj) -> JSONSchema:
        keys = names_of(self.keys)
        companions = set(names_of(self.alongside))
        if not companions:
            return {"oneOf": [{"required": [k]} for k in keys]}
        sole = [k for k in keys if k not in companions]
        pairs = [{"required": list(p)} for p in itertools.combinations(sole, 2)]
        return {
            "anyOf": [{"required": [k]} for k in keys],
            **({"not": {"anyOf": pairs}} if pairs else {}),
        }


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
    values: Names
    require: tuple[str, ...] = ()
    require_one_of: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    refine: Mapping[str, Spec] = field(default_factory=dict)
    hint: str | None = None

    def matching(self) -> tuple[str, ...]:
        """The values of ``key`` this rule is about (read now: ``values`` may be a registry's)."""
        return names_of(self.values)

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        if self.key in seen.values:
            actual = seen.values[self.key]
        elif self.key in seen.keys:
            return  # present but invalid: already reported, nothing to conclude
        else:
            actual = obj.defaults().get(self.key)
        if actual not in self.matching():
            return
        condition = f"{self.key} is {actual}"
        for key in self.require:
            if key not in seen.keys:
                required = obj.get_field(key)
                hint = self.hint or (required.hint() if required else None)
                ctx.report(seen.node, path, f"missing `{key}`, needed when {condition}", hint)
        if self.require_one_of and not any(k in seen.keys for k in self.require_one_of):
            ctx.report(
                seen.node,
                path,
                f"needs {quote_keys(self.require_one_of)} when {condition}",
                self.hint,
            )
        for key in self.forbid:
            if key in seen.keys:
                ctx.report(
                    seen.keys[key],
                    path,
                    f"`{key}` does not apply when {condition}",
                    _applies_hint(obj, self.key, key),
                )
        for key, spec in self.refine.items():
            if key in seen.values:
                spec.check(seen.value_nodes[key], (*path, key), ctx)

    def schema(self, obj: Obj) -> JSONSchema:
        values = self.matching()
        condition: JSONSchema = {"properties": {self.key: {"enum": list(values)}}}
        if obj.defaults().get(self.key) not in values:
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


def _applies_hint(obj: Obj, key: str, forbidden: str) -> str:
    """``host only applies with via: git``, from every When rule on ``key``."""
    spec = obj.get_field(key)
    choices = spec.spec.choices if spec and isinstance(spec.spec, Enum) else ()
    allowed = [
        c
        for c in choices
        if not any(
            isinstance(r, When) and r.key == key and c in r.matching() and forbidden in r.forbid
            for r in obj.rules
        )
    ]
    if not allowed:
        return f"remove `{forbidden}`"
    choices_text = (
        ", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1 else allowed[0]
    )
    return f"`{forbidden}` only applies with {key}: {choices_text}"


@dataclass(frozen=True)
class SchemaOnly(Rule):
    """A rule that only the JSON Schema states; the validator checks it elsewhere, knowing more.

    E.g. a credential's required keys, which the loop's agent preset may supply
    (config/preset_credentials.py): an editor sees the plain rule.
    """

    rule: Rule

    def check(self, obj: Obj, seen: Seen, path: KeyPath, ctx: Context) -> None:
        return None

    def schema(self, obj: Obj) -> JSONSchema:
        return self.rule.schema(obj)
