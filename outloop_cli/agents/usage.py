"""What an agent CLI says about its own turn, read from the JSON it prints.

Each preset parses its tool's machine-readable report into a ``Report``; the
shared code here reads JSON lines out of the merged stdout/stderr log (stderr
chatter and partial lines are skipped) and classifies error text that the
tools do not classify themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The reports we need sit at the end of the log; a flooding agent must not
# make outloop read gigabytes to find them.
_READ_LIMIT = 4 * 1024 * 1024


@dataclass
class Report:
    """One turn as the agent reported it; None means the agent did not say."""

    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # part of input_tokens that was served from the provider's cache
    cached_input_tokens: int | None = None
    cost_usd: float | None = None
    final_message: str | None = None
    # an error kind (see ``records.AgentResult.error``) and the agent's own words
    error: str | None = None
    error_detail: str | None = None
    model: str | None = None
    # False when no machine-readable report was found at all
    found: bool = False


def read_log(path: Path) -> str:
    """The end of a log, decoded leniently."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _READ_LIMIT))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every line of ``text`` that is a JSON object, in order."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def add(total: int | None, value: int | None) -> int | None:
    if value is None:
        return total
    return value if total is None else total + value


# HTTP statuses and provider wording, for tools that pass errors on as text.
_AUTH = re.compile(
    r"\b401\b|\b403\b|unauthori[sz]ed|authentication|invalid[ _-]?(x-)?api[ _-]?key|"
    r"incorrect api key|api key not valid|permission_denied|UNAUTHENTICATED",
    re.IGNORECASE,
)
_RATE = re.compile(
    r"\b429\b|rate[ _-]?limit|RESOURCE_EXHAUSTED|quota|too many requests|insufficient_quota",
    re.IGNORECASE,
)


def classify_api_error(text: str, status: int | None = None) -> str:
    """auth | rate_limit | api_error, from an HTTP status and/or the error's wording."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limit"
    if status is not None and status >= 500:
        # overloaded or broken upstream: not the user's key or quota
        return "api_error"
    if _AUTH.search(text):
        return "auth"
    if _RATE.search(text):
        return "rate_limit"
    return "api_error"


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def field_dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is a JSON object, else an empty one."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}
