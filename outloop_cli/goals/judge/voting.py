"""Several independent judgments into one verdict: the majority per criterion.

A vote that failed (no valid verdict, a timeout) counts as failing every
criterion, with its error as the reason: an unanswered judge never makes a
pass. A tie is no majority, so it fails too. Disagreements are kept, vote by vote.
"""

from __future__ import annotations

from collections.abc import Sequence

from outloop_cli.goals.judge.verdict import JUDGE_ERROR, Vote
from outloop_cli.store.records import CriterionVerdict


def tally(criteria: Sequence[str], votes: Sequence[Vote | str]) -> list[CriterionVerdict]:
    """Each criterion decided by the votes (a ``str`` vote is an error: ``judge_error: …``)."""
    results = []
    for index, criterion in enumerate(criteria):
        cast = [
            (False, vote) if isinstance(vote, str) else (vote.met[index], vote.reasons[index])
            for vote in votes
        ]
        passed = sum(1 for met, _ in cast if met)
        met = passed * 2 > len(cast)
        winning = [reason for ok, reason in cast if ok == met]
        # a real reason beats an error's when the failing side has both
        real = [r for r in winning if not r.startswith(JUDGE_ERROR)]
        reason = (real or winning or [f"{JUDGE_ERROR}: no vote"])[0]
        disagree = len({ok for ok, _ in cast}) > 1
        dissent = (
            [f"vote {i}: {'pass' if ok else 'fail'}: {r}" for i, (ok, r) in enumerate(cast, 1)]
            if disagree
            else []
        )
        results.append(
            CriterionVerdict(
                criterion=criterion,
                met=met,
                reason=reason,
                passed_votes=passed,
                votes=len(cast),
                dissent=dissent,
            )
        )
    return results
