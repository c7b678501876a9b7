"""The commit-trailer protocol: written into every iteration commit, read back from the branch.

Trailers are how the branch itself says what happened (``Outloop-Iteration``,
``Outloop-Goal``, ``Outloop-Audit-Head``), so resume and ``outloop audit
verify`` trust the history rather than files a crash may have torn. The keys,
the way they are rendered and the ``git log`` format that reads them back live
here together, so writer and readers cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.git.cli import Git

RUN = "Outloop-Run"
LOOP = "Outloop-Loop"
ITERATION = "Outloop-Iteration"
GOAL = "Outloop-Goal"
AGENT = "Outloop-Agent"
COST_USD = "Outloop-Cost-USD"
TOKENS = "Outloop-Tokens"
AUDIT_HEAD = "Outloop-Audit-Head"
# the judge's verdict (pass | fail) and its own usage, apart from the agent's
JUDGE = "Outloop-Judge"
JUDGE_COST_USD = "Outloop-Judge-Cost-USD"
JUDGE_TOKENS = "Outloop-Judge-Tokens"

# the values of Outloop-Goal
GOAL_PASS = "pass"
GOAL_FAIL = "fail"
GOAL_PENDING = "pending"
GOAL_NONE = "none"

# separators git prints between commits, between fields, and between repeated trailers:
# control characters no trailer value can hold (values are one line of printable text)
_RECORD = "\x1e"
_FIELD = "\x1f"
_REPEAT = "\x1d"
_VALUE_LIMIT = 200
# Unicode's category Cc is exactly C0, DEL and C1 (a table, not unicodedata: this module is
# on the start-up path of `outloop status`, and unicodedata costs it 1.5 ms)
_CONTROLS_TO_SPACE = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")


def _flat(text: str) -> str:
    # control characters (ESC of a terminal sequence, DEL) become spaces; format
    # characters such as the zero-width joiner of an emoji stay
    cleaned = text.translate(_CONTROLS_TO_SPACE)
    return " ".join(cleaned.split())


def one_line(text: str) -> str:
    """Free text (a label) for a commit: one line, no control characters, bounded."""
    return _flat(text)[:_VALUE_LIMIT]


def render(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``Key: value`` lines for the end of a commit message (each value kept on one line)."""
    return [f"{key}: {_flat(value)}" for key, value in pairs]


@dataclass(frozen=True)
class CommitTrailers:
    """One commit and the values of the trailers asked for (every occurrence, in order)."""

    sha: str
    values: Mapping[str, tuple[str, ...]]

    def only(self, key: str) -> str | None:
        """The value of a trailer given exactly once; a repeated one is no answer."""
        found = self.values.get(key, ())
        return found[0] if len(found) == 1 else None

    def all(self, key: str) -> tuple[str, ...]:
        return self.values.get(key, ())


def read(
    cwd: Path | Git,
    revisions: Sequence[str],
    keys: Sequence[str],
    *,
    reverse: bool = False,
    first_parent: bool = False,
) -> list[CommitTrailers]:
    """The trailers ``keys`` of every commit in ``git log <revisions>``."""
    fields = ["%H", *(f"%(trailers:key={key},valueonly,separator=%x1d)" for key in keys)]
    flags = [*(["--reverse"] if reverse else []), *(["--first-parent"] if first_parent else [])]
    git = cwd if isinstance(cwd, Git) else Git(cwd)
    out = git.run("log", *flags, "--format=" + _FIELD.join(fields) + _RECORD, *revisions, "--")
    commits = []
    for entry in out.split(_RECORD):
        parts = entry.strip("\n").split(_FIELD)
        if len(parts) != len(fields):
            continue
        sha, *raw = parts
        values = {
            key: tuple(v.strip() for v in value.split(_REPEAT) if v.strip())
            for key, value in zip(keys, raw, strict=False)
        }
        commits.append(CommitTrailers(sha.strip(), values))
    return commits
