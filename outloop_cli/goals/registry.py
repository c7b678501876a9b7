"""The goal kinds: which key of ``goal:`` selects which verifier.

A loop's goal is of one kind, named for the key that selects it (and
the :class:`~outloop_cli.config.model.GoalConfig` field of that name): ``run``,
a shell command (:mod:`~outloop_cli.goals.command`), ``ci``, the forge's
checks on the pushed commit (:mod:`~outloop_cli.goals.ci.verifier`), or
``judge``, a model judging the work against a spec (:mod:`~outloop_cli.goals.judge`),
which may also stand beside one of the others (it is asked once that one passes). The loop
schema reads the kinds from here. Each entry imports its verifier only when a
run builds one; verifiers import :mod:`outloop_cli.goals.base`, never this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from outloop_cli.errors import CouldNotRun

if TYPE_CHECKING:
    from outloop_cli.config.model import GoalConfig
    from outloop_cli.goals.base import Verifier


@dataclass(frozen=True)
class GoalKind:
    """One kind of goal: its name and how to build its verifier."""

    name: str
    # builds the verifier for a goal of this kind, importing its module on first use
    build: Callable[[GoalConfig], Verifier]
    # may stand beside another kind (the judge, asked once `run` or `ci` passes)
    alongside: bool = False


def _run(goal: GoalConfig) -> Verifier:
    from outloop_cli.goals.command import CommandVerifier

    return CommandVerifier(goal)


def _ci(goal: GoalConfig) -> Verifier:
    from outloop_cli.goals.ci.verifier import CIVerifier

    assert goal.ci is not None
    return CIVerifier(goal.ci)


def _judge(goal: GoalConfig) -> Verifier:
    from outloop_cli.goals.judge.verifier import JudgeOnlyVerifier

    assert goal.judge is not None
    return JudgeOnlyVerifier(goal.judge)


# In the order messages list them.
KINDS: dict[str, GoalKind] = {
    kind.name: kind
    for kind in (GoalKind("run", _run), GoalKind("ci", _ci), GoalKind("judge", _judge, True))
}


def kind_names() -> tuple[str, ...]:
    return tuple(KINDS)


def companion_names() -> tuple[str, ...]:
    """The kinds that may stand beside another one."""
    return tuple(name for name, kind in KINDS.items() if kind.alongside)


def kind_of(goal: GoalConfig) -> str | None:
    """The kind of ``goal``: the first kind whose key it sets; None when it sets none."""
    return next((name for name in KINDS if getattr(goal, name, None) is not None), None)


def make_verifier(goal: GoalConfig) -> Verifier:
    kind = kind_of(goal)
    if kind is None:
        keys = [f"`{name}`" for name in KINDS]
        which = (
            f"neither {keys[0]} nor {keys[1]}" if len(keys) == 2 else f"none of {', '.join(keys)}"
        )
        hint = "set " + _either([f"`goal.{name}`" for name in KINDS])
        raise CouldNotRun(f"the goal has {which}", hint=hint)
    return KINDS[kind].build(goal)


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
