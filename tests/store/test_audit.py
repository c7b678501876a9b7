"""The audit log's hash chain: every kind of tampering is caught and located.

Synthetic logs pin down exactly which line is named and why; real runs
(the CLI, real git, real agent processes) prove the same through
``outloop audit verify``, with the heads kept in run.json and in the
commits' ``Outloop-Audit-Head`` trailers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.store.audit import (
    GENESIS,
    AuditLog,
    ChainHead,
    Checkpoint,
    line_hash,
    verify,
)
from tests.conftest import RepoFactory, git
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, only_run, run_cli, runs_dir

Lines = list[bytes]


def _write_log(path: Path, events: int = 8, run_id: str = "r1") -> ChainHead:
    log = AuditLog(path, run_id)
    log.append("run_started", loop="fix", branch="outloop/fix/r1")
    for n in range(1, events - 1):
        log.append("goal_evaluated", iteration=n, met=False, failing=3)
    log.append("run_stopped", reason="max_iterations", detail="out of turns")
    head = log.head()
    assert head is not None and head.seq == events
    return head


def _lines(path: Path) -> Lines:
    return path.read_bytes().splitlines(keepends=True)


def _entry(line: bytes) -> dict[str, object]:
    return dict(json.loads(line))


def _dump(entry: dict[str, object]) -> bytes:
    return json.dumps(entry, ensure_ascii=False).encode() + b"\n"


def _rechain(lines: Lines, start: int) -> Lines:
    """What a careful forger does: recompute every `prev` from ``start`` on."""
    out = list(lines)
    for i in range(max(start, 1), len(out)):
        entry = _entry(out[i])
        entry["prev"] = line_hash(out[i - 1])
        out[i] = _dump(entry)
    return out


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, ChainHead]:
    path = tmp_path / "audit.jsonl"
    return path, _write_log(path)


def test_an_intact_log_verifies_and_reports_its_head(log: tuple[Path, ChainHead]) -> None:
    path, head = log
    result = verify(path, checkpoints=[Checkpoint(head, "run.json")], run_id="r1")
    assert result.ok, result.reason
    assert result.lines == 8
    assert result.head == head
    first = _entry(_lines(path)[0])
    assert first["prev"] == GENESIS
    assert first["seq"] == 1
    assert set(first) >= {"seq", "time", "run", "event", "prev"}


def _edit_field(lines: Lines) -> Lines:
    entry = _entry(lines[3])
    entry["met"] = True
    return [*lines[:3], _dump(entry), *lines[4:]]


def _delete(lines: Lines) -> Lines:
    return [*lines[:3], *lines[4:]]


def _delete_first(lines: Lines) -> Lines:
    return lines[1:]


def _insert_forged(lines: Lines) -> Lines:
    # a well-formed event that links correctly to the line before it
    forged = {
        "seq": 4,
        "time": _entry(lines[3])["time"],
        "run": _entry(lines[3])["run"],
        "event": "credential_granted",
        "secret": "openai",
        "prev": line_hash(lines[2]),
    }
    return [*lines[:3], _dump(forged), *lines[3:]]


def _insert_garbage(lines: Lines) -> Lines:
    return [*lines[:3], b'{"event": "note", "text": "hello"}\n', *lines[3:]]


def _swap(lines: Lines) -> Lines:
    return [*lines[:3], lines[4], lines[3], *lines[5:]]


def _duplicate(lines: Lines) -> Lines:
    return [*lines[:4], lines[3], *lines[4:]]


def _change_prev(lines: Lines) -> Lines:
    entry = _entry(lines[4])
    entry["prev"] = "f" * 64
    return [*lines[:4], _dump(entry), *lines[5:]]


def _truncate_mid_line(lines: Lines) -> Lines:
    return [*lines[:-1], lines[-1][:20]]


def _not_json(lines: Lines) -> Lines:
    return [*lines[:2], b"this is not json\n", *lines[3:]]


def _blank_line(lines: Lines) -> Lines:
    return [*lines[:2], b"\n", *lines[2:]]


def _other_run(lines: Lines) -> Lines:
    entries = [_entry(line) for line in lines]
    for entry in entries:
        entry["run"] = "r2"
    return _rechain([_dump(e) for e in entries], 1)


def _crlf(lines: Lines) -> Lines:
    return [*lines[:5], lines[5].rstrip(b"\n") + b"\r\n", *lines[6:]]


def _edit_seq(lines: Lines) -> Lines:
    entry = _entry(lines[3])
    entry["seq"] = 40
    return [*lines[:3], _dump(entry), *lines[4:]]


def _reformat(lines: Lines) -> Lines:
    # same JSON, different bytes: still an edit
    return [
        *lines[:2],
        json.dumps(_entry(lines[2]), indent=1).replace("\n", "").encode() + b"\n",
        *lines[3:],
    ]


def _move_first_to_end(lines: Lines) -> Lines:
    return [*lines[1:], lines[0]]


# (tampering, first bad line, words the reason must contain)
TAMPERINGS: list[tuple[Callable[[Lines], Lines], int, str]] = [
    (_edit_field, 4, "line 4 does not hash to the `prev` recorded in line 5"),
    (_delete, 4, "sequence 4 was removed"),
    (_delete_first, 1, "sequence 1 was removed"),
    (_insert_forged, 4, "line 4 was inserted"),
    (_insert_garbage, 4, "line 4 has no valid sequence number"),
    (_swap, 4, "lines were reordered"),
    (_duplicate, 5, "line 5 is an exact copy of line 4"),
    (_change_prev, 4, "line 5's `prev` was"),
    (_truncate_mid_line, 8, "cut off"),
    (_not_json, 3, "line 3 is not valid JSON"),
    (_blank_line, 3, "line 3 is empty"),
    (_other_run, 1, "belongs to run r2, not r1"),
    (_crlf, 6, "line 6 does not hash"),
    (_edit_seq, 4, "its sequence number was edited"),
    (_reformat, 3, "line 3 does not hash"),
    (_move_first_to_end, 1, "sequence 1 is on line 8: lines were reordered"),
]


@pytest.mark.parametrize(
    ("tamper", "bad_line", "words"), TAMPERINGS, ids=[t[0].__name__[1:] for t in TAMPERINGS]
)
def test_every_tampering_names_the_first_bad_line(
    log: tuple[Path, ChainHead],
    tamper: Callable[[Lines], Lines],
    bad_line: int,
    words: str,
) -> None:
    path, head = log
    path.write_bytes(b"".join(tamper(_lines(path))))
    result = verify(path, checkpoints=[Checkpoint(head, "run.json")], run_id="r1")
    assert not result.ok
    assert result.bad_line == bad_line, result.reason
    assert words in (result.reason or "")


def test_truncating_the_end_is_caught_only_by_a_head_kept_elsewhere(
    log: tuple[Path, ChainHead],
) -> None:
    path, head = log
    path.write_bytes(b"".join(_lines(path)[:-2]))
    # the chain alone cannot know what is missing after its last line
    assert verify(path).ok
    result = verify(path, checkpoints=[Checkpoint(head, "run.json")])
    assert not result.ok
    assert result.bad_line == 7
    assert result.reason == (
        "the log ends at sequence 6, but run.json records sequence 8: "
        "lines were removed from the end"
    )
    path.write_bytes(b"")
    emptied = verify(path, expected_head=head)
    assert not emptied.ok
    assert "the log ends at nothing (the log is empty)" in (emptied.reason or "")


def test_editing_the_last_line_is_caught_by_the_head(log: tuple[Path, ChainHead]) -> None:
    path, head = log
    lines = _lines(path)
    entry = _entry(lines[-1])
    entry["reason"] = "goal_met"
    path.write_bytes(b"".join([*lines[:-1], _dump(entry)]))
    result = verify(path, checkpoints=[Checkpoint(head, "run.json")])
    assert not result.ok
    assert result.bad_line == 8
    assert "does not match the hash run.json recorded" in (result.reason or "")


def test_a_recomputed_chain_is_caught_between_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, events=10)
    lines = _lines(path)
    early = ChainHead(2, line_hash(lines[1]))
    middle = ChainHead(6, line_hash(lines[5]))
    end = ChainHead(10, line_hash(lines[9]))
    entry = _entry(lines[3])
    entry["met"] = True
    forged = _rechain([*lines[:3], _dump(entry), *lines[4:]], 4)
    path.write_bytes(b"".join(forged))
    # the links all hold: only a head kept elsewhere can tell
    assert verify(path).ok
    marks = [
        Checkpoint(end, "run.json"),
        Checkpoint(early, "commit aaaaaaaaaa"),
        Checkpoint(middle, "commit bbbbbbbbbb"),
    ]
    result = verify(path, checkpoints=marks)
    assert not result.ok
    assert result.bad_line == 6
    assert result.reason == (
        "line 6 (sequence 6) does not match the hash commit bbbbbbbbbb recorded for it: "
        "the log was rewritten after sequence 2 (which matches commit aaaaaaaaaa), "
        "with a recomputed chain (or commit bbbbbbbbbb was edited)"
    )


def test_nothing_may_follow_the_final_head_of_a_run_that_is_over(
    log: tuple[Path, ChainHead],
) -> None:
    path, head = log
    final = Checkpoint(head, "run.json")
    assert verify(path, final=final).ok
    AuditLog(path, "r1").append("credential_granted", secret="openai")
    result = verify(path, final=final)
    assert not result.ok
    assert result.bad_line == 9
    assert result.reason == (
        "line 9 was appended after the run was over (run.json ends it at sequence 8)"
    )


def test_a_record_saved_just_before_its_final_event_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "r1")
    log.append("run_started")
    log.append("committed", iteration=1)
    saved = log.head()
    assert saved is not None
    log.append("run_stopped", reason="goal_met")
    assert verify(path, final=Checkpoint(saved, "run.json")).ok
    # but only that one event: a second one was not written by the run
    log.append("run_stopped", reason="goal_met")
    result = verify(path, final=Checkpoint(saved, "run.json"))
    assert not result.ok
    assert result.bad_line == 4


def test_a_log_that_grew_after_its_checkpoint_still_verifies(log: tuple[Path, ChainHead]) -> None:
    path, head = log
    AuditLog(path, "r1").append("stop_requested", how="now")
    result = verify(path, checkpoints=[Checkpoint(head, "run.json")])
    assert result.ok, result.reason
    assert result.lines == 9


def test_head_parsing() -> None:
    digest = "ab" * 32
    assert ChainHead.from_trailer(f"12:{digest}") == ChainHead(12, digest)
    assert ChainHead.from_trailer(f" 3:{digest.upper()} ") == ChainHead(3, digest)
    for bad in ("", "12", f"x:{digest}", "12:abc", f"-1:{digest}"):
        assert ChainHead.from_trailer(bad) is None
    assert ChainHead.from_dict({"seq": 4, "hash": digest}) == ChainHead(4, digest)
    for bad_dict in (None, {}, {"seq": "4", "hash": digest}, {"seq": True, "hash": digest}):
        assert ChainHead.from_dict(bad_dict) is None
    assert ChainHead(4, digest).trailer() == f"4:{digest}"


APPENDER = """
import sys
from pathlib import Path
from outloop_cli.store.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), "r1")
for i in range(int(sys.argv[3])):
    log.append("proxy_request", writer=sys.argv[2], i=i, path="/v1/chat/completions")
"""


def test_concurrent_writers_never_interleave_or_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), str(w), "150"],
            cwd=Path(__file__).resolve().parents[2],
        )
        for w in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    result = verify(path, run_id="r1")
    assert result.ok, result.reason
    assert result.lines == 600
    assert path.stat().st_mode & 0o777 == 0o600


# -- real runs, through the CLI ------------------------------------------------------


def _real_run(make_repo: RepoFactory) -> tuple[Path, dict[str, object], Path]:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(3))}
    )
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    return repo, record, runs_dir(repo) / str(record["run_id"]) / "audit.jsonl"


def _verify_cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(repo, "audit", "verify", *args)


def test_real_run_verifies_against_run_json_and_commit_trailers(make_repo: RepoFactory) -> None:
    repo, record, _ = _real_run(make_repo)
    run_id = str(record["run_id"])
    done = _verify_cli(repo, run_id[-6:], "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["run"] == run_id
    assert "run.json" in report["checked_against"]
    # every iteration's commit carries the head as it stood before it
    commits = [s for s in report["checked_against"] if s.startswith("commit ")]
    assert len(commits) == 3
    assert report["warnings"] == []
    human = _verify_cli(repo)
    assert human.returncode == 0
    assert human.stdout.startswith(f"ok {run_id}: ")
    assert "matches run.json, 3 commit trailer(s)" in human.stdout


# tamperings applied to a real run's log, each to a fresh copy of the intact bytes
REAL_TAMPERINGS: list[tuple[str, Callable[[Lines], Lines], str]] = [
    ("edit", _edit_field, "line 4 does not hash"),
    ("delete", _delete, "sequence 4 was removed"),
    ("insert", _insert_forged, "line 4 was inserted"),
    ("swap", _swap, "lines were reordered"),
    ("duplicate", _duplicate, "is an exact copy of line 4"),
    ("change prev", _change_prev, "line 5's `prev` was"),
    ("truncate mid-line", _truncate_mid_line, "cut off"),
    ("truncate end", lambda lines: lines[:-3], "lines were removed from the end"),
    ("recomputed chain", lambda lines: _rechain(_edit_field(lines), 4), "recomputed chain"),
]


def test_real_run_every_tampering_fails_verify_naming_the_line(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    run_id = str(record["run_id"])
    intact = audit.read_bytes()
    for name, tamper, words in REAL_TAMPERINGS:
        audit.write_bytes(b"".join(tamper(intact.splitlines(keepends=True))))
        done = _verify_cli(repo, run_id)
        assert done.returncode == 1, f"{name}: {done.stdout}{done.stderr}"
        assert done.stdout.startswith(f"FAILED {run_id}: "), name
        assert words in done.stdout, f"{name}: {done.stdout}"
        assert f"{audit}:" in done.stdout, name
        audit.write_bytes(intact)
    assert _verify_cli(repo, run_id).returncode == 0


def test_real_run_appending_after_the_end_is_caught(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    lines = _lines(audit)
    forged = {
        "seq": len(lines) + 1,
        "time": _entry(lines[-1])["time"],
        "run": record["run_id"],
        "event": "credential_granted",
        "secret": "openai",
        "prev": line_hash(lines[-1]),
    }
    audit.write_bytes(b"".join([*lines, _dump(forged)]))
    done = _verify_cli(repo, str(record["run_id"]))
    assert done.returncode == 1
    assert f"line {len(lines) + 1} was appended after the run was over" in done.stdout


def test_real_run_removing_the_head_from_a_finished_record_is_caught(
    make_repo: RepoFactory,
) -> None:
    repo, record, audit = _real_run(make_repo)
    run_json = audit.parent / "run.json"
    data = json.loads(run_json.read_text())
    data["audit_head"] = None
    run_json.write_text(json.dumps(data))
    done = _verify_cli(repo, str(record["run_id"]))
    assert done.returncode == 1
    assert "records no audit head: it was removed" in done.stdout


def _edit_record(audit: Path, change: Callable[[dict[str, Any]], None]) -> None:
    run_json = audit.parent / "run.json"
    data = json.loads(run_json.read_text())
    change(data)
    run_json.write_text(json.dumps(data))


def test_real_run_a_record_that_contradicts_its_log_fails(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    run_id = str(record["run_id"])
    intact = (audit.parent / "run.json").read_text()

    def stop_reason(data: dict[str, Any]) -> None:
        data["stop_reason"] = "max_iterations"

    def goal_verdict(data: dict[str, Any]) -> None:
        data["iterations"][1]["goal"]["met"] = True

    def commit(data: dict[str, Any]) -> None:
        data["iterations"][2]["commit"] = "f" * 40

    for change, words in (
        (stop_reason, "run.json says the run stopped with `max_iterations`, but the audit log"),
        (goal_verdict, "run.json says iteration 1's goal was met, but the audit log"),
        (commit, "run.json says iteration 2 is commit ffffffffff, but the audit log"),
    ):
        _edit_record(audit, change)
        done = _verify_cli(repo, run_id)
        assert done.returncode == 1, change.__name__
        assert words in done.stdout, done.stdout
        assert "run.json was edited" in done.stdout
        (audit.parent / "run.json").write_text(intact)
    assert _verify_cli(repo, run_id).returncode == 0


def test_real_run_a_rewritten_branch_is_reported(make_repo: RepoFactory) -> None:
    repo, record, _ = _real_run(make_repo)
    branch = str(record["branch"])
    git(repo, "branch", "-f", branch, f"{branch}~1")
    done = _verify_cli(repo, str(record["run_id"]))
    # the log itself is intact; what it records is no longer what the branch holds
    assert done.returncode == 0
    assert "(iteration 3, line" in done.stderr
    assert f"is no longer on {record['branch']}: the branch was rewritten" in done.stderr


def test_real_run_forgery_of_log_and_run_json_is_caught_by_the_commits(
    make_repo: RepoFactory,
) -> None:
    repo, record, audit = _real_run(make_repo)
    run_id = str(record["run_id"])
    lines = _lines(audit)
    # the agent turned out to fail its first goal check... the forger says it passed
    target = next(i for i, line in enumerate(lines) if _entry(line)["event"] == "goal_evaluated")
    entry = _entry(lines[target])
    entry["met"] = True
    forged = _rechain([*lines[:target], _dump(entry), *lines[target + 1 :]], target + 1)
    audit.write_bytes(b"".join(forged))
    run_json = audit.parent / "run.json"
    data = json.loads(run_json.read_text())
    data["audit_head"] = {"seq": len(forged), "hash": line_hash(forged[-1])}
    run_json.write_text(json.dumps(data))
    done = _verify_cli(repo, run_id)
    assert done.returncode == 1
    assert "does not match the hash commit " in done.stdout
    assert "recomputed chain" in done.stdout


def test_real_run_last_line_truncation_is_caught(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    lines = _lines(audit)
    assert _entry(lines[-1])["event"] == "run_stopped"
    audit.write_bytes(b"".join(lines[:-1]))
    done = _verify_cli(repo, str(record["run_id"]))
    assert done.returncode == 1, "run.json's audit_head must cover the final run_stopped event"
    assert "lines were removed from the end" in done.stdout


def test_verify_every_run_reports_each_and_fails_if_any_fails(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    second = run_cli(repo, "run", "fix")
    assert second.returncode == 0
    ids = sorted(p.name for p in runs_dir(repo).iterdir())
    assert len(ids) == 2
    assert _verify_cli(repo).returncode == 0
    lines = _lines(audit)
    audit.write_bytes(b"".join(_swap(lines)))
    done = _verify_cli(repo)
    assert done.returncode == 1
    out = done.stdout.splitlines()
    assert any(line.startswith(f"FAILED {record['run_id']}") for line in out)
    assert any(line.startswith("ok ") for line in out)
    assert "1 of 2 audit log(s) failed verification" in done.stderr


def test_verify_survives_a_missing_log_branch_or_record(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    run_id = str(record["run_id"])
    shutil.rmtree(str(record["worktree"]))
    git(repo, "branch", "-D", str(record["branch"]))
    done = _verify_cli(repo, run_id)
    assert done.returncode == 0
    assert f"branch {record['branch']} is gone" in done.stderr
    (audit.parent / "run.json").write_text("{broken")
    done = _verify_cli(repo, run_id)
    assert done.returncode == 0
    assert "run.json is not valid JSON" in done.stderr
    # a log whose record was deleted is still verified when verifying every run
    (audit.parent / "run.json").unlink()
    done = _verify_cli(repo)
    assert done.returncode == 0
    assert done.stdout.startswith(f"ok {run_id}: ")
    assert "run.json is missing" in done.stderr
    (audit.parent / "run.json").write_text("{broken")
    audit.unlink()
    done = _verify_cli(repo, run_id)
    assert done.returncode == 1
    assert "is missing" in done.stdout


def test_unknown_run_is_a_usage_error(make_repo: RepoFactory) -> None:
    repo, _, _ = _real_run(make_repo)
    done = _verify_cli(repo, "no-such-run")
    assert done.returncode == 2
    assert "no run matches `no-such-run`" in done.stderr
    assert "outloop status" in done.stderr
    shown = run_cli(repo, "audit", "show", "no-such-run")
    assert shown.returncode == 2


def test_show_prints_events_readably_and_as_json(make_repo: RepoFactory) -> None:
    repo, record, audit = _real_run(make_repo)
    run_id = str(record["run_id"])
    done = run_cli(repo, "audit", "show", run_id)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    events = [_entry(line) for line in _lines(audit)]
    assert len(out) == len(events)
    assert "run_started" in out[0]
    assert "#1 " in out[0]
    assert "loop=fix" in out[0]
    assert str(events[0]["time"]).replace("T", " ").removesuffix("+00:00") in out[0]
    commit_line = next(line for line in out if " committed " in line)
    assert "iteration=1" in commit_line
    # shas are shortened, the chain's own fields are left out
    assert "commit=" in commit_line
    assert len(commit_line.split("commit=")[1].split()[0]) == 10
    assert "prev=" not in done.stdout
    assert 'detail="the goal was met after 3 iteration(s)"' in out[-1]
    as_json = run_cli(repo, "audit", "show", run_id, "--json")
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == events
    # a damaged log is still shown, with a warning
    audit.write_bytes(b"".join(_not_json(_lines(audit))))
    damaged = run_cli(repo, "audit", "show", run_id)
    assert damaged.returncode == 0
    assert "line 3: is not valid JSON" in damaged.stdout
    assert "warning: this log fails verification" in damaged.stderr


def test_last_head_after_append_is_what_reading_the_log_gives(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run-1")
    for n in range(3):
        log.append("iteration_started", iteration=n, note="ünïcode")
        assert log.last_head == log.head()
    # another writer's append is seen by head(), and last_head says what *we* wrote
    AuditLog(log.path, "run-1").append("other")
    head, ours = log.head(), log.last_head
    assert head is not None and ours is not None
    assert head.seq == ours.seq + 1


def test_the_log_makes_its_directory_when_it_is_missing_and_chains_on(tmp_path: Path) -> None:
    # the directory is made only when opening the file finds it missing (not before every
    # event): a run's directory removed under it is made again, and the chain goes on
    path = tmp_path / "runs" / "r1" / "audit.jsonl"
    log = AuditLog(path, "r1")
    log.append("run_started")
    shutil.rmtree(tmp_path / "runs")
    log.append("iteration_started", iteration=1)
    assert [_entry(line)["event"] for line in _lines(path)] == ["iteration_started"]
    log.append("iteration_started", iteration=2)
    assert verify(path).ok


def test_writers_taking_turns_each_chain_on_the_other(tmp_path: Path) -> None:
    """A writer skips reading back its own last line only while nobody else has written."""
    path = tmp_path / "audit.jsonl"
    ours, theirs = AuditLog(path, "r1"), AuditLog(path, "r1")
    for n in range(3):
        ours.append("iteration_started", iteration=n)
        ours.append("agent_exited", iteration=n)
        theirs.append("steered", iteration=n)
    assert verify(path, run_id="r1").ok
    assert [_entry(line)["seq"] for line in _lines(path)] == list(range(1, 10))


def test_a_last_line_rewritten_to_its_length_is_not_chained_onto(tmp_path: Path) -> None:
    """What the writer wrote is what it chains on: the forgery stays the first bad line."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "r1")
    log.append("run_started")
    log.append("goal_evaluated", met=False)
    data = path.read_bytes()
    forged = data.replace(b'"met": false', b'"met": 1e999')
    assert len(forged) == len(data) and forged != data
    path.write_bytes(forged)
    log.append("run_stopped", reason="goal_met")
    result = verify(path, run_id="r1")
    assert not result.ok
    assert result.bad_line == 2, result
