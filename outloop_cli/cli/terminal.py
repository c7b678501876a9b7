"""The one place the CLI writes human text: every string made safe for a terminal first.

What the commands print holds strings outloop did not write (file names the
agent chose, goal output, branch names, an upstream's error, a loop file's
description), so each line passes :func:`outloop_cli.safe_text.for_terminal`
on its way out. Machine output goes through :func:`out_json`, ASCII-only, so
it carries every character escaped and nothing a terminal would act on.
Raw bytes for a program (a git credential answer, a token for `via: helper`)
are the only exception, and go through :func:`out_raw`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from outloop_cli.safe_text import for_terminal


def out(text: str) -> None:
    """Human text on stdout."""
    sys.stdout.write(for_terminal(text) + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Human text on stderr; stdout is kept for machine-readable output."""
    sys.stderr.write(for_terminal(text) + "\n")
    sys.stderr.flush()


def out_json(value: Any, **dumps: Any) -> None:
    """One JSON document on stdout, every non-ASCII character escaped."""
    sys.stdout.write(json.dumps(value, ensure_ascii=True, **dumps) + "\n")
    sys.stdout.flush()


def out_raw(data: str | bytes) -> None:
    """Output for a program, exactly as given (never shown to a person by outloop)."""
    if isinstance(data, bytes):
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data)
    sys.stdout.flush()
