"""The CI goal: wait for a forge's checks on the pushed commit and judge them."""

from outloop_cli.goals.ci.provider import Check, CheckDetail, CIProvider, CISnapshot, Verdict, judge
from outloop_cli.goals.ci.verifier import CITiming, CIVerifier, provider_for

__all__ = [
    "CIProvider",
    "CISnapshot",
    "CITiming",
    "CIVerifier",
    "Check",
    "CheckDetail",
    "Verdict",
    "judge",
    "provider_for",
]
