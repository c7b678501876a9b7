"""Goal verifiers: outside checks that decide whether a loop is done."""

from outloop_cli.goals.base import GoalContext, Verifier, make_verifier

__all__ = ["GoalContext", "Verifier", "make_verifier"]
