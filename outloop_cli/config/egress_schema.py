"""The ``host:port`` egress rules as the loop file and the policy file both declare them."""

from __future__ import annotations

from outloop_cli.config import values as v
from outloop_cli.config.spec_collections import ListOf
from outloop_cli.config.spec_scalars import Str
from outloop_cli.sandbox.egress_rules import RuleError, parse_network, parse_rule


def check_egress_rule(text: str) -> str:
    """A ``host:port`` rule, normalised (lowercase, no trailing dot)."""
    try:
        return str(parse_rule(text))
    except RuleError as exc:
        raise v.BadValue(exc.message, exc.hint) from None


def check_network(text: str) -> str:
    try:
        return str(parse_network(text))
    except RuleError as exc:
        raise v.BadValue(exc.message, exc.hint) from None


EGRESS_RULES = ListOf(Str("a host:port rule", check_text=check_egress_rule), unique=True)
