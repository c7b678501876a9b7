"""Repairing an audit log whose last line a crash cut off before its newline."""

from __future__ import annotations

import hashlib
from pathlib import Path

from outloop_cli.store.audit import AuditLog, TornTail, cut_torn_audit_tail, verify


def test_a_torn_last_line_is_cut_and_the_chain_verifies_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "run-1")
    log.append("run_started", loop="fix")
    log.append("iteration_started", iteration=1)
    whole = path.read_bytes()
    fragment = b'{"seq": 3, "event": "agent_ex'
    path.write_bytes(whole + fragment)

    assert cut_torn_audit_tail(path) == TornTail(
        len(fragment), hashlib.sha256(fragment).hexdigest()
    )
    assert path.read_bytes() == whole
    assert verify(path, run_id="run-1").ok


def test_a_whole_empty_or_missing_log_is_left_alone(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    whole = tmp_path / "whole.jsonl"
    AuditLog(whole, "run-1").append("run_started")
    before = whole.read_bytes()

    assert cut_torn_audit_tail(missing) is None
    assert cut_torn_audit_tail(empty) is None
    assert cut_torn_audit_tail(whole) is None
    assert not missing.exists()
    assert whole.read_bytes() == before


def test_a_log_of_one_torn_line_becomes_empty(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq": 1')
    torn = cut_torn_audit_tail(path)
    assert torn is not None and torn.length == 9
    assert path.read_bytes() == b""
