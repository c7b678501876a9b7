"""Glob patterns for repo paths (``protect:``), with ``**`` across directories.

Semantics follow .gitignore where users expect them to: a pattern without a
slash matches a file name at any depth; ``dir/`` means everything below
``dir``; ``**`` matches any number of directories; ``*`` and ``?`` never
cross a ``/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    pat = pattern.strip()
    if pat.endswith("/"):
        pat += "**"
    anchored = "/" in pat.rstrip("/")
    pat = pat.lstrip("/")
    out = []
    i = 0
    while i < len(pat):
        ch = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    body = "".join(out)
    if not anchored:
        body = "(?:.*/)?" + body
    # a pattern naming a directory also covers what is inside it
    return re.compile(f"^{body}(?:/.*)?$", re.DOTALL)


def matches(path: str, pattern: str) -> bool:
    return _compile(pattern).match(path) is not None


def match_any(path: str, patterns: Iterable[str]) -> bool:
    return any(matches(path, p) for p in patterns)
