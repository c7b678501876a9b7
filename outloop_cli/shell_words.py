"""The words of a goal's shell script, for finding the programs it names (never run)."""

from __future__ import annotations

import shlex


def script_words(script: str | None) -> list[str]:
    """Best effort, never fails: shell quoting and comments where they parse, else whitespace."""
    if not script:
        return []
    try:
        return shlex.split(script, comments=True)
    except ValueError:
        return script.split()
