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

from outloop_cli.audit import (
    HEAD_TRAILER,
    AuditLine,
    ChainHead,
    Checkpoint,
    VerifyResult,
    read_lines,
    verify,
)
from outloop_cli.errors import GitError, UsageError
from outloop_cli.runstore import RunPaths, RunStore
from outloop_cli.workspace import Git, discover

# git log --format fields: commit, the audit-head trailer(s), the run trailer
_FIELD = "\x1f"
_RECORD = "\x1e"


@dataclass(frozen=True)
class RunVerification:
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
    run_id: str
    audit_path: Path
    lines: list[AuditLine] = field(default_factory=list)
    verification: RunVerification | None = None


def verify_runs(cwd: Path, run_ref: str | None = None) -> list[RunVerification]:
    """Verify one run (id or unique prefix), or every run of the repository."""
    info = discover(cwd)
    store = RunStore(info.common_dir)
    run_ids = [store.resolve(run_ref)] if run_ref else _every_run(store)
    git = Git(info.root)
    return [verify_run(git, store.paths(run_id)) for run_id in run_ids]


def _every_run(store: RunStore) -> list[str]:
    """Runs with a record, and logs whose record is gone: deleting run.json hides nothing."""
    ids = set(store.run_ids())
    if store.root.is_dir():
        ids.update(p.name for p in store.root.iterdir() if (p / "audit.jsonl").is_file())
    return sorted(ids)


def show_events(cwd: Path, run_ref: str) -> AuditView:
    info = discover(cwd)
    store = RunStore(info.common_dir)
    run_id = store.resolve(run_ref)
    paths = store.paths(run_id)
    try:
        lines = read_lines(paths.audit)
    except FileNotFoundError:
        raise UsageError(
            f"run {run_id} has no audit log ({paths.audit} is missing)",
            hint=f"`outloop audit verify {run_id}` reports what is known",
        ) from None
    return AuditView(run_id, paths.audit, lines, verify_run(Git(info.root), paths))


def verify_run(git: Git, paths: RunPaths) -> RunVerification:
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
    if isinstance(branch, str) and branch:
        commit_marks, branch_problem = _commit_checkpoints(git, branch, base, run_id)
        marks.extend(commit_marks)
        if branch_problem:
            warnings.append(branch_problem)
    sources = tuple(dict.fromkeys(m.source for m in [*marks, *([final] if final else [])]))
    if not paths.audit.exists():
        reason = f"the audit log {paths.audit} is missing"
        missing = VerifyResult(False, 0, None, None, reason)
        return RunVerification(run_id, paths.audit, missing, sources, tuple(warnings))
    result = verify(paths.audit, checkpoints=marks, run_id=run_id, final=final)
    return RunVerification(run_id, paths.audit, result, sources, tuple(warnings))


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


def _commit_checkpoints(
    git: Git, branch: str, base: object, run_id: str
) -> tuple[list[Checkpoint], str | None]:
    """Heads from the ``Outloop-Audit-Head`` trailers of this run's commits on its branch."""
    ref = f"refs/heads/{branch}"
    if not git.run("rev-parse", "--verify", "--quiet", ref, ok_codes=(0, 1)):
        return [], f"branch {branch} is gone: its commits' heads cannot be checked"
    span = [f"{base}..{ref}"] if isinstance(base, str) and base else [ref]
    fmt = (
        f"%H{_FIELD}%(trailers:key={HEAD_TRAILER},valueonly,separator=%x1d)"
        f"{_FIELD}%(trailers:key=Outloop-Run,valueonly,separator=%x1d){_RECORD}"
    )
    try:
        out = git.run("log", f"--format={fmt}", *span, "--")
    except GitError as exc:
        return [], f"could not read the commits of {branch}: {exc.stderr or exc.message}"
    marks: list[Checkpoint] = []
    for chunk in out.split(_RECORD):
        parts = chunk.strip("\n").split(_FIELD)
        if len(parts) != 3:
            continue
        sha, heads, runs = parts
        if run_id not in runs.split("\x1d"):
            continue
        for value in heads.split("\x1d"):
            head = ChainHead.from_trailer(value) if value.strip() else None
            if head is not None:
                marks.append(Checkpoint(head, f"commit {sha[:10]}"))
    return marks, None
