"""The judge's answer, validated: one pass/fail with a reason per criterion, or an error.

A verdict is never read out of prose. The answer must be one JSON object (the
CLI's structured output, or its final message as a whole, optionally in one code
fence); anything else, a missing criterion, a repeated one or a reason-less one
is a :class:`VerdictError`, which counts as a failed check (``judge_error``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from outloop_cli.goals.judge.prompt import MAX_REASON_CHARS

JUDGE_ERROR = "judge_error"
_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n(.*)\n```\Z", re.DOTALL)


class VerdictError(Exception):
    """The judge gave no valid verdict; the message says what was wrong."""


@dataclass(frozen=True)
class Vote:
    """One judgment: per criterion (in order) whether it is met and why."""

    met: tuple[bool, ...]
    reasons: tuple[str, ...]


def from_text(text: str | None) -> Any:
    """The JSON value of an answer given as text (the whole text, or one fenced block)."""
    if text is None or not text.strip():
        raise VerdictError("the judge gave no answer")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise VerdictError(f"the answer is not JSON ({exc.msg} at {exc.pos})") from None


def _reason(value: Any, number: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise VerdictError(f"criterion {number} has no reason")
    flat = " ".join(value.split())
    return flat if len(flat) <= MAX_REASON_CHARS else flat[: MAX_REASON_CHARS - 1] + "…"


def validate(value: Any, count: int) -> Vote:
    """The vote in ``value``, which must give each of ``count`` criteria exactly once."""
    if not isinstance(value, dict) or not isinstance(value.get("verdicts"), list):
        raise VerdictError('the answer is not an object with a "verdicts" list')
    seen: dict[int, tuple[bool, str]] = {}
    for entry in value["verdicts"]:
        if not isinstance(entry, dict):
            raise VerdictError("a verdict is not an object")
        number = entry.get("criterion")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= count:
            raise VerdictError(f"a verdict names no criterion from 1 to {count}: {number!r}")
        if number in seen:
            raise VerdictError(f"criterion {number} is judged twice")
        met = entry.get("met")
        if not isinstance(met, bool):
            raise VerdictError(f'criterion {number} has no true/false "met"')
        seen[number] = (met, _reason(entry.get("reason"), number))
    missing = [n for n in range(1, count + 1) if n not in seen]
    if missing:
        raise VerdictError(f"criteria not judged: {', '.join(map(str, missing))}")
    ordered = [seen[n] for n in range(1, count + 1)]
    return Vote(tuple(m for m, _ in ordered), tuple(r for _, r in ordered))
