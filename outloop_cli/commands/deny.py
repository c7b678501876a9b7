"""``outloop deny RUN --reason …``: the run's pending request is refused; the run ends.

The decision is made exactly as an approval is (``commands/approve.py``),
bound to the request id the run waits for; the run then stops with
``approval_denied``.
"""

from __future__ import annotations

from outloop_cli.commands.approve import DecisionResult, deny_run, operator_name

__all__ = ["DecisionResult", "deny_run", "operator_name"]
