"""The run record: what a run did, as stored in ``run.json``.

The engine fills these in as it goes and persists them after every step;
reports, ``status`` and ``show`` read them back with ``RunRecord.from_dict``.
Plain data only: no I/O here (see ``runstore`` for that).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TypeVar, cast

RECORD_VERSION = 1


class StopReason(str, Enum):
    GOAL_MET = "goal_met"
    MAX_ITERATIONS = "max_iterations"
    MAX_TIME = "max_time"
    MAX_COST = "max_cost"
    MAX_TOKENS = "max_tokens"
    STALLED = "stalled"
    STOPPED = "stopped"
    AGENT_ERROR = "agent_error"
    PROTECTED_PATH = "protected_path"
    SECRET_IN_DIFF = "secret_in_diff"
    INTERRUPTED = "interrupted"
    # a human said no at an approval gate (`outloop deny`), or nobody answered in time
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_TIMEOUT = "approval_timeout"
    # the run could not start or continue (git failure, agent missing, secret refused)
    ERROR = "error"


class RunState(str, Enum):
    RUNNING = "running"
    # alive, paused at an approval gate until `outloop approve` or `outloop deny`
    WAITING_APPROVAL = "waiting_approval"
    FINISHED = "finished"
    # set by readers that find a "running" record whose process is gone
    CRASHED = "crashed"

    @property
    def live(self) -> bool:
        """A state only a living runner may be in (its lock tells whether it still is)."""
        return self in (RunState.RUNNING, RunState.WAITING_APPROVAL)


@dataclass
class TestCounts:
    """How many tests a goal ran, passed, failed, errored and skipped."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0

    @property
    def failing(self) -> int:
        return self.failed + self.errors


@dataclass
class TestCase:
    """One test case from the goal's own JUnit file, carried into our report."""

    classname: str
    name: str
    time: float = 0.0
    # "passed" | "failed" | "error" | "skipped"
    outcome: str = "passed"
    message: str | None = None
    # failure text, already trimmed and masked
    details: str | None = None


@dataclass
class CriterionVerdict:
    """One criterion as the judge decided it (the majority of the votes)."""

    criterion: str
    met: bool
    # the reason of a vote on the winning side; `judge_error: …` when no vote gave one
    reason: str
    # votes that passed it, of the votes cast
    passed_votes: int = 0
    votes: int = 1
    # when the votes disagree: each vote's verdict and reason, in order
    dissent: list[str] = field(default_factory=list)


@dataclass
class JudgeResult:
    """What the judge (goals/judge/) said of one iteration's commit."""

    preset: str
    met: bool
    criteria: list[CriterionVerdict] = field(default_factory=list)
    votes: int = 1
    # votes that gave no valid verdict, and why (each counts as failing every criterion)
    errors: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    duration: float = 0.0
    # paths relative to the run directory: the prompt, and each vote's log
    prompt: str | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass
class GoalResult:
    """What one goal evaluation found, as kept in run.json."""

    met: bool
    exit_code: int | None
    duration: float
    timed_out: bool = False
    # one line for humans: "exit 1 after 2.3s; 2 of 7 tests failing"
    summary: str = ""
    tests: TestCounts | None = None
    failing: list[str] = field(default_factory=list)
    # the goal's own test cases (only kept for the latest evaluation)
    cases: list[TestCase] = field(default_factory=list)
    # stable fingerprint of *how* it failed, for stall detection
    signature: str = ""
    # last lines of output, masked; full output is in `log`
    output_tail: str = ""
    # paths relative to the run directory
    log: str | None = None
    junit: str | None = None
    # the judge's verdict, when the loop has `goal.judge` and it was asked
    judge: JudgeResult | None = None

    @property
    def failing_count(self) -> int | None:
        """How many tests fail, when the goal says (its JUnit counts, else the names it gave).

        Without a JUnit file the names are all there is, and no names means unknown.
        """
        if self.tests is not None:
            return self.tests.failing
        return len(self.failing) if self.failing else None


@dataclass
class AgentResult:
    """How one agent turn went, as kept in run.json."""

    exit_code: int | None
    duration: float
    timed_out: bool = False
    idle_timed_out: bool = False
    cancelled: bool = False
    output_bytes: int = 0
    # error kind when the turn failed: "exit", "timeout", "idle", "cancelled", "max_time",
    # "not_found", "auth", "rate_limit", "permission", "api_error", "malformed", "crash"
    error: str | None = None
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    final_message: str | None = None
    log: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class IterationRecord:
    """One iteration of a run: the agent's turn, its commit and the goal's verdict."""

    # 0 is the baseline goal check before any agent turn
    n: int
    started_at: str
    finished_at: str | None = None
    duration: float = 0.0
    agent: AgentResult | None = None
    commit: str | None = None
    changed_files: list[str] = field(default_factory=list)
    # files the agent wrote but we did not commit (too large), with sizes
    skipped_files: dict[str, int] = field(default_factory=dict)
    goal: GoalResult | None = None
    # what the operator said to this turn (`outloop say`): {id, who, at, text}
    operator_notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything run.json holds about one run."""

    run_id: str
    loop: str
    state: RunState
    started_at: str
    branch: str
    base_commit: str
    worktree: str
    repo_root: str
    config_path: str
    agent_label: str
    goal_label: str
    limits: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    stop_reason: StopReason | None = None
    # a sentence on why it stopped, for humans
    stop_detail: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    duration: float = 0.0
    pid: int | None = None
    host: str | None = None
    outloop_version: str = ""
    iterations: list[IterationRecord] = field(default_factory=list)
    # what the run is doing now: baseline, agent, commit, goal, push, stopping, done
    phase: str | None = None
    # the iteration in progress (0 = baseline); its record is appended when it ends
    current_iteration: int = 0
    # last audit event (seq, sha256) when run.json was written; catches truncation
    audit_head: dict[str, Any] | None = None
    # tree of the snapshot taken before the goal ran, until it is committed (crash recovery)
    pending_tree: str | None = None
    # the sandbox asked for and got: {"requested": "auto", "active": true, "warning": null}
    sandbox: dict[str, Any] | None = None
    # the approval the run waits for (state waiting_approval): id, gate, what, since, ...
    approval: dict[str, Any] | None = None
    # gates approved once for the whole run (push, pr, cost, credential:NAME, iterations:N),
    # so a resumed run does not ask again
    approved: list[str] = field(default_factory=list)
    # what started the run: {"kind": "issues", "summary": …, "data": {…}} (triggers/event.py)
    trigger: dict[str, Any] | None = None
    # how the worktree was made: {"reused_from": run id or None, "files_checked_out": n or
    # None, "skipped": {run id: why its worktree was not taken}} (engine/worktree_reuse.py)
    worktree_origin: dict[str, Any] | None = None
    version: int = RECORD_VERSION

    # -- derived facts --------------------------------------------------------

    @property
    def agent_iterations(self) -> list[IterationRecord]:
        return [it for it in self.iterations if it.n > 0]

    @property
    def last_goal(self) -> GoalResult | None:
        for it in reversed(self.iterations):
            if it.goal is not None:
                return it.goal
        return None

    @property
    def goal_met(self) -> bool:
        return self.stop_reason is StopReason.GOAL_MET

    @property
    def cost_usd(self) -> float | None:
        costs = [
            it.agent.cost_usd
            for it in self.iterations
            if it.agent and it.agent.cost_usd is not None
        ]
        # the judge's model calls are the run's spending too
        costs += [j.cost_usd for j in self._judges() if j.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def tokens(self) -> int | None:
        counts = [
            (it.agent.input_tokens or 0) + (it.agent.output_tokens or 0)
            for it in self.iterations
            if it.agent
            and (it.agent.input_tokens is not None or it.agent.output_tokens is not None)
        ]
        counts += [j.tokens for j in self._judges() if j.tokens is not None]
        return sum(counts) if counts else None

    def _judges(self) -> list[JudgeResult]:
        return [it.goal.judge for it in self.iterations if it.goal and it.goal.judge]

    # -- serialisation ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["stop_reason"] = self.stop_reason.value if self.stop_reason else None
        data["cost_usd"] = self.cost_usd
        data["tokens"] = self.tokens
        return data

    def to_json(self) -> bytes:
        """``run.json``'s bytes: what ``to_dict`` holds, as JSON indented by two.

        Encoded by msgspec in C: ``asdict`` and json's indenting encoder (pure
        Python) cost every save milliseconds that grow with the iterations, and
        a run saves its record several times an iteration. Each iteration but
        the last is encoded once and kept (see :class:`_IterationCache`), so a
        save of a long run costs what its newest iteration and the run's own
        fields cost, not the whole history again.
        """
        top = {name: getattr(self, name) for name in _ordered_field_names(RunRecord)}
        top["cost_usd"] = self.cost_usd
        top["tokens"] = self.tokens
        if not self.iterations:
            return _formatted(top) + b"\n"
        top["iterations"] = []
        head, found, tail = _formatted(top).partition(_EMPTY_ITERATIONS)
        if not found:
            # cannot happen (a depth-1 key of an indented object); never guess
            raise AssertionError("run.json's iterations key was not where it belongs")
        cache = self.__dict__.get("_iteration_cache")
        if cache is None or not cache.serves(self.iterations):
            cache = self.__dict__["_iteration_cache"] = _IterationCache(self.iterations)
        parts = [head, b'\n  "iterations": [\n']
        for fragment in cache.fragments(self.iterations, _encode_iteration):
            parts += (fragment, b",\n")
        # one copy of the bytes: the last item's comma gives way to the list's end
        parts[-1] = b"\n  ],\n"
        parts += (tail, b"\n")
        return b"".join(parts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        raw = dict(data)
        raw.pop("cost_usd", None)
        raw.pop("tokens", None)
        raw["state"] = RunState(raw["state"])
        raw["stop_reason"] = StopReason(raw["stop_reason"]) if raw.get("stop_reason") else None
        raw["iterations"] = [_iteration_from_dict(it) for it in raw.get("iterations", [])]
        known = _field_names(cast(Any, cls))
        return cls(**{k: v for k, v in raw.items() if k in known})


# how run.json's "iterations" key reads, empty, between its neighbours; a string value
# cannot hold it (its quotes would be escaped, its newline too), nor a deeper key (more indent)
_EMPTY_ITERATIONS = b'\n  "iterations": [],\n'


def _formatted(value: object) -> bytes:
    import msgspec

    return msgspec.json.format(msgspec.json.encode(value), indent=2)


def _encode_iteration(it: IterationRecord) -> bytes:
    """One iteration as it stands inside run.json's list: formatted, every line 4 deeper."""
    import msgspec

    lines = msgspec.json.format(msgspec.json.encode(it), indent=2).split(b"\n")
    return b"\n".join(b"    " + line for line in lines)


class _IterationCache:
    """The encoded iterations of one ``RunRecord.iterations`` list, all but its last.

    The engine appends iterations and changes only the newest one; a resume
    or a reconcile that edits older ones replaces the list, which empties the
    cache (the list itself is held, so its identity cannot be reused). An
    entry is keyed by the iteration object as well as its place.
    """

    def __init__(self, iterations: list[IterationRecord]) -> None:
        self._list = iterations
        self._done: list[tuple[IterationRecord, bytes]] = []

    def serves(self, iterations: list[IterationRecord]) -> bool:
        return iterations is self._list

    def fragments(
        self, iterations: list[IterationRecord], encode: Callable[[IterationRecord], bytes]
    ) -> list[bytes]:
        done = self._done
        same = min(len(done), len(iterations) - 1)
        keep = 0
        while keep < same and done[keep][0] is iterations[keep]:
            keep += 1
        del done[keep:]
        for it in iterations[keep:-1]:
            done.append((it, encode(it)))
        return [fragment for _, fragment in done] + [encode(iterations[-1])]


def _iteration_from_dict(data: dict[str, Any]) -> IterationRecord:
    raw = dict(data)
    if raw.get("agent") is not None:
        raw["agent"] = _build(AgentResult, raw["agent"])
    if raw.get("goal") is not None:
        goal = dict(raw["goal"])
        if goal.get("tests") is not None:
            goal["tests"] = _build(TestCounts, goal["tests"])
        goal["cases"] = [_build(TestCase, c) for c in goal.get("cases", [])]
        if goal.get("judge") is not None:
            judge = dict(goal["judge"])
            judge["criteria"] = [_build(CriterionVerdict, c) for c in judge.get("criteria", [])]
            goal["judge"] = _build(JudgeResult, judge)
        raw["goal"] = _build(GoalResult, goal)
    return _build(IterationRecord, raw)


_T = TypeVar("_T")


def _build(cls: type[_T], data: dict[str, Any]) -> _T:
    """Build a dataclass from a dict, ignoring keys a newer version added."""
    known = _field_names(cast(Any, cls))
    return cls(**{k: v for k, v in data.items() if k in known})


@functools.cache
def _ordered_field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cast(Any, cls)))


@functools.cache
def _field_names(cls: type[Any]) -> frozenset[str]:
    # asked once per record and per iteration's parts: `status` reads every run's record
    return frozenset(f.name for f in dataclasses.fields(cast(Any, cls)))
