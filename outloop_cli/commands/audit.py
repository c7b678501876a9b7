"""``outloop audit verify`` and ``outloop audit show``: prove and read what a run did.

A log can only prove so much about itself: its ``prev`` links catch an edit,
deletion, insertion or reordering, but not lines cut from the end, nor a log
rewritten with a freshly computed chain. So each run's chain is also checked
against the heads kept outside it: ``run.json``'s ``audit_head`` and the
``Outloop-Audit-Head`` trailer of every commit on the run's branch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outloop_cli.commands.run_ref import open_run
from outloop_cli.credentials.run_key import load_run_key, run_keys_dir
from outloop_cli.engine.access import refusals_log
from outloop_cli.errors import GitError, UsageError
from outloop_cli.git import trailers
from outloop_cli.git.repo import Repository, discover
from outloop_cli.store.audit import (
    AuditLine,
    ChainHead,
    Checkpoint,
    VerifyResult,
    read_lines,
    sealed,
    verify,
    verify_chain,
)
from outloop_cli.store.chain_scan import KeyEvent
from outloop_cli.store.runs import RunPaths, RunStore


@dataclass(frozen=True)
class RunVerification:
    """Whether a run's audit log (or the refusals log) holds up, and what it was checked against."""

    run_id: str
    audit_path: Path
    result: VerifyResult
    # where the heads compared against came from ("run.json", "commit 1a2b3c4d5e")
    checked_against: tuple[str, ...] = ()
    # facts that weaken the proof without being tampering (no head recorded, branch gone)
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result.ok

    def as_json(self) -> dict[str, Any]:
        head = self.result.head
        return {
            "run": self.run_id,
            "ok": self.ok,
            "events": self.result.lines,
            "head": head.to_dict() if head else None,
            "bad_line": self.result.bad_line,
            "reason": self.result.reason,
            "checked_against": list(self.checked_against),
            "warnings": list(self.warnings),
            "audit": str(self.audit_path),
        }


@dataclass(frozen=True)
class AuditView:
    """One run's audit log as ``outloop audit show`` prints it: its events and its verification."""

    run_id: str
    audit_path: Path
    lines: list[AuditLine] = field(default_factory=list)
    verification: RunVerification | None = None


def verify_runs(cwd: Path, run_ref: str | None = None) -> list[RunVerification]:
    """Verify one run (id or unique prefix), or every run of the repository."""
    if run_ref:
        # one run: named from any directory, as `show` does
        run = open_run(cwd, run_ref)
        return [verify_run(Repository(run.repo), run.paths)]
    info = discover(cwd)
    store = RunStore(info.common_dir)
    repo = Repository(info)
    results = [verify_run(repo, store.paths(run_id)) for run_id in _every_run(store)]
    refusals = refusals_log(repo)
    if refusals.is_file():
        results.append(verify_refusals(refusals))
    return results


REFUSALS = "refused"


def verify_refusals(path: Path) -> RunVerification:
    """The log of runs refused before they started: its links only, as nothing holds its head.

    No run record or commit keeps a head of it and no run key seals it (there was
    no run), so only an edit, insertion or reordering inside it can be seen.
    """
    warning = "no head of the refusals log is kept elsewhere: lines cut from its end cannot be seen"
    return RunVerification(REFUSALS, path, verify(path), (), (warning,))


def _every_run(store: RunStore) -> list[str]:
    """Runs with a record, and logs whose record is gone: deleting run.json hides nothing."""
    ids = set(store.run_ids())
    if store.root.is_dir():
        ids.update(p.name for p in store.root.iterdir() if (p / "audit.jsonl").is_file())
    return sorted(ids)


def show_events(cwd: Path, run_ref: str) -> AuditView:
    run = open_run(cwd, run_ref)
    info, run_id, paths = run.repo, run.run_id, run.paths
    try:
        lines = read_lines(paths.audit)
    except FileNotFoundError:
        raise UsageError(
            f"run {run_id} has no audit log ({paths.audit} is missing)",
            hint=f"`outloop audit verify {run_id}` reports what is known",
        ) from None
    return AuditView(run_id, paths.audit, lines, verify_run(Repository(info), paths))


def verify_run(repo: Repository, paths: RunPaths) -> RunVerification:
    run_id = paths.run_id
    record, problem = _raw_record(paths)
    warnings: list[str] = []
    if problem:
        warnings.append(problem)
    marks: list[Checkpoint] = []
    final: Checkpoint | None = None
    finished = record.get("state") == "finished"
    head = ChainHead.from_dict(record.get("audit_head"))
    if head is not None and finished:
        # the run is over: its log must end where its record says
        final = Checkpoint(head, "run.json")
    elif head is not None:
        marks.append(Checkpoint(head, "run.json"))
    elif finished:
        reason = "run.json of this finished run records no audit head: it was removed"
        result = VerifyResult(False, 0, None, None, reason)
        return RunVerification(run_id, paths.audit, result, (), tuple(warnings))
    elif not problem:
        warnings.append("run.json records no audit head: lines cut from the end cannot be seen")
    branch, base = record.get("branch"), record.get("base_commit")
    on_branch: set[str] | None = None
    if isinstance(branch, str) and branch:
        commits, branch_problem = _branch_commits(repo, branch, base)
        if branch_problem:
            warnings.append(branch_problem)
        else:
            on_branch = {c.sha for c in commits}
            marks.extend(_commit_checkpoints(commits, run_id))
    sources = tuple(dict.fromkeys(m.source for m in [*marks, *([final] if final else [])]))
    if not paths.audit.exists():
        reason = f"the audit log {paths.audit} is missing"
        missing = VerifyResult(False, 0, None, None, reason)
        return RunVerification(run_id, paths.audit, missing, sources, tuple(warnings))
    key = load_run_key(run_id)
    if key is None and sealed(paths.audit):
        warnings.append(
            f"the run's key is gone ({run_keys_dir()}/{run_id}.key): its MACs cannot be "
            "checked, so a log rewritten with a recomputed chain would not be seen"
        )
    result, events = verify_chain(
        paths.audit,
        checkpoints=marks,
        run_id=run_id,
        final=final,
        check_mac=key.verify if key is not None else None,
        check_macs=key.verify_all if key is not None else None,
    )
    if result.ok:
        contradiction = _contradiction(record, events, result.lines)
        if contradiction is not None:
            line, reason = contradiction
            result = VerifyResult(False, result.lines, result.head, line, reason)
        if on_branch is not None:
            warnings.extend(_commits_not_on_branch(events, on_branch, str(branch)))
    return RunVerification(run_id, paths.audit, result, sources, tuple(warnings))


def _contradiction(
    record: dict[str, Any], events: list[KeyEvent], lines: int
) -> tuple[int, str] | None:
    """Where run.json claims something the (intact) log says otherwise: the record was edited.

    ``events`` are the log's starts, stops, goals and commits, ``lines`` its length.
    Only the latest session counts (after the last ``run_started``/``run_resumed``),
    and a claim the log has no event for yet (a crash between the two writes) is not
    a contradiction.
    """
    # a long run's log holds hundreds of thousands of these: C-level searches, not a loop
    kinds = [e.event for e in events]
    session_start = max(_last_index(kinds, kind) for kind in _SESSION_STARTS)
    last_stop = _last_index(kinds, "run_stopped")
    stopped = events[last_stop] if last_stop > session_start else None
    reason = record.get("stop_reason")
    # an intact log's every line is an event, so a session is empty only in an empty log
    if record.get("state") == "finished" and lines and stopped is None:
        # the runner logs run_stopped as it finishes; only a cut can take it away
        return lines + 1, (
            "the run is finished but its log has no `run_stopped` event after line "
            f"{lines}: lines were removed from the end"
        )
    if record.get("state") == "finished" and stopped is not None and reason:
        number = stopped.number
        if stopped.reason != reason:
            return number, (
                f"run.json says the run stopped with `{reason}`, but the audit log "
                f"(line {number}) says `{stopped.reason}`: run.json was edited"
            )
    claimed = record.get("iterations") or []
    if not claimed:
        return None
    goals = {
        e.iteration: (e.seq, e.met)
        for e in events
        if e.event == "goal_evaluated" and isinstance(e.iteration, int)
    }
    commits = {
        e.iteration: (e.seq, e.commit)
        for e in events
        if e.event == "committed" and isinstance(e.iteration, int)
    }
    for it in claimed:
        if not isinstance(it, dict) or not isinstance(it.get("n"), int):
            continue
        n = it["n"]
        goal = it.get("goal")
        if isinstance(goal, dict) and n in goals and goals[n][1] != goal.get("met"):
            number, met = goals[n]
            said = "met" if goal.get("met") else "not met"
            logged = "met" if met else "not met"
            return number, (
                f"run.json says iteration {n}'s goal was {said}, but the audit log "
                f"(line {number}) says {logged}: run.json was edited"
            )
        sha = it.get("commit")
        if sha and n in commits and commits[n][1] != sha:
            number, logged_sha = commits[n]
            return number, (
                f"run.json says iteration {n} is commit {str(sha)[:10]}, but the audit log "
                f"(line {number}) says {str(logged_sha)[:10]}: run.json was edited"
            )
    return None


_SESSION_STARTS = ("run_started", "run_resumed")


def _last_index(kinds: list[str], kind: str) -> int:
    """Where ``kind`` last occurs in ``kinds``; -1 when it does not."""
    try:
        return len(kinds) - 1 - kinds[::-1].index(kind)
    except ValueError:
        return -1


def _commits_not_on_branch(events: list[KeyEvent], on_branch: set[str], branch: str) -> list[str]:
    """The branch is the loop's history: a logged commit missing from it was rewritten away."""
    missing = []
    for event in events:
        sha = event.commit
        if event.event == "committed" and isinstance(sha, str) and sha not in on_branch:
            missing.append(
                f"commit {sha[:10]} (iteration {event.iteration}, line {event.number}) "
                f"is no longer on {branch}: the branch was rewritten"
            )
    return missing


def _raw_record(paths: RunPaths) -> tuple[dict[str, Any], str | None]:
    """run.json as plain data: verification must work even on a record that no longer loads."""
    try:
        data = json.loads(paths.run_json.read_text())
    except FileNotFoundError:
        return {}, "run.json is missing: only the commits' heads can be checked"
    except (OSError, ValueError):
        return {}, "run.json is not valid JSON: only the commits' heads can be checked"
    if not isinstance(data, dict):
        return {}, "run.json is not a JSON object: only the commits' heads can be checked"
    return data, None


@dataclass(frozen=True)
class _BranchCommit:
    """A commit on a run's branch, with its ``Outloop-Audit-Head`` and ``Outloop-Run`` trailers."""

    sha: str
    heads: tuple[str, ...]
    runs: tuple[str, ...]


def _branch_commits(
    repo: Repository, branch: str, base: object
) -> tuple[list[_BranchCommit], str | None]:
    """The run's commits on its branch, with their audit-head and run trailers."""
    ref = f"refs/heads/{branch}"
    if repo.branch_head(branch) is None:
        return [], f"branch {branch} is gone: its commits' heads cannot be checked"
    span = [f"{base}..{ref}"] if isinstance(base, str) and base else [ref]
    try:
        found = repo.trailers(span, [trailers.AUDIT_HEAD, trailers.RUN])
    except GitError as exc:
        return [], f"could not read the commits of {branch}: {exc.stderr or exc.message}"
    commits = [_BranchCommit(c.sha, c.all(trailers.AUDIT_HEAD), c.all(trailers.RUN)) for c in found]
    return commits, None


def _commit_checkpoints(commits: list[_BranchCommit], run_id: str) -> list[Checkpoint]:
    """Heads from the ``Outloop-Audit-Head`` trailers of this run's commits."""
    marks: list[Checkpoint] = []
    for commit in commits:
        if run_id not in commit.runs:
            continue
        for value in commit.heads:
            head = ChainHead.from_trailer(value) if value.strip() else None
            if head is not None:
                marks.append(Checkpoint(head, f"commit {commit.sha[:10]}"))
    return marks
