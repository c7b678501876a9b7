"""The one-pass verifier accepts exactly the logs the line-by-line checker accepts.

``verify`` first tries ``store/chain_scan.py``'s streaming pass and falls back
to the line-by-line checker (which names the first bad line) on any doubt. The
pass must never accept a log the checker rejects: every log below, intact or
damaged in one of many ways (edits, reorders, insertions, deletions, cut
tails, rewritten chains with and without the key, and lines that only a
strict JSON parser refuses), gets exactly the checker's verdict and message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from outloop_cli.credentials.run_key import RunKey
from outloop_cli.store import chain_scan
from outloop_cli.store.audit import (
    AuditLimits,
    AuditLog,
    ChainHead,
    Checkpoint,
    VerifyResult,
    _key_events,
    _verify_fast,
    _verify_lines,
    line_hash,
    read_lines,
    seal_line,
    verify,
    verify_chain,
)

Lines = list[bytes]
KEY = RunKey("r1", bytes(range(32)))
RUN = "r1"


def _write(path: Path, events: int = 12, key: RunKey | None = KEY) -> list[bytes]:
    log = AuditLog(path, RUN, seal=key.mac if key else None)
    log.append("run_started", loop="fix", branch="outloop/fix/r1", base="0" * 40)
    for n in range(1, events - 1):
        if n % 3 == 0:
            log.append("committed", iteration=n, commit=f"{n:040x}", files=2)
        elif n % 3 == 1:
            log.append("goal_evaluated", iteration=n, met=False, failing=["t::a", "t::b"])
        else:
            log.append("proxy_request", name="llm", method="POST", path="/v1/x", status=200)
    log.append("run_stopped", reason="max_iterations", detail="out of turns")
    return path.read_bytes().splitlines(keepends=True)


def _reseal(entry_bytes: bytes, key: RunKey | None) -> bytes:
    """A line as a forger holding the key (or, without one, anyone) writes it."""
    body = entry_bytes.rstrip(b"\n")
    found = body.rfind(b', "mac": "')
    if found > 0:
        body = body[:found] + b"}"
    return (seal_line(body, key.mac) if key else body) + b"\n"


def _rechain(lines: Lines, start: int, key: RunKey | None) -> Lines:
    """Recompute every link after ``start`` (and its MAC, with the key)."""
    out = list(lines)
    for i in range(max(start, 1), len(out)):
        entry = json.loads(out[i])
        entry.pop("mac", None)
        entry["prev"] = line_hash(out[i - 1])
        out[i] = _reseal(json.dumps(entry, ensure_ascii=False).encode(), key)
    return out


def _replace(lines: Lines, index: int, text: bytes, key: RunKey | None) -> Lines:
    """Line ``index`` becomes ``text`` (sealed with the key), the rest relinked to it."""
    out = list(lines)
    out[index] = _reseal(text, key)
    return _rechain(out, index + 1, key)


def _field_edit(lines: Lines, index: int, old: bytes, new: bytes) -> bytes:
    line = lines[index]
    assert old in line, (old, line)
    return line.replace(old, new, 1)


def _json_oddities(lines: Lines) -> dict[str, bytes]:
    """Line 4 rewritten into things a lenient or a strict JSON parser may judge apart."""
    line = lines[3].rstrip(b"\n")
    body = line[: line.rfind(b', "mac": "')] if b', "mac": "' in line else line
    open_ = body[:-1]
    return {
        "NaN in a field": open_ + b', "x": NaN}',
        "Infinity in a field": open_ + b', "x": -Infinity}',
        "invalid UTF-8 in a skipped field": open_ + b', "x": "\xc3"}',
        "overlong UTF-8 in a skipped field": open_ + b', "x": "\xc0\xaf"}',
        "an encoded surrogate": open_ + b', "x": "\xed\xa0\x80"}',
        "a lone surrogate escape": open_ + b', "x": "\\ud800"}',
        "a raw tab in a string": open_ + b', "x": "a\tb"}',
        "a byte order mark": b"\xef\xbb\xbf" + body,
        "leading and trailing blanks": b" " + body + b" \r",
        "a float sequence": body.replace(b'"seq": 4,', b'"seq": 4.0,'),
        "a boolean sequence": body.replace(b'"seq": 4,', b'"seq": true,'),
        "the sequence twice": open_ + b', "seq": 9}',
        "the prev twice": open_ + b', "prev": "' + b"0" * 64 + b'"}',
        "the run twice": open_ + b', "run": "r2"}',
        "an escaped key": body.replace(b'"seq": 4,', b'"s\\u0065q": 4,'),
        "a huge integer": open_ + b', "x": ' + b"7" * 5000 + b"}",
        "a 700-digit integer": open_ + b', "x": ' + b"7" * 700 + b"}",
        "deep nesting": open_ + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        "moderate nesting": open_ + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}",
        "a trailing comma": open_ + b", }",
        "two objects": body + b" " + body,
        "an array": b"[" + body + b"]",
        "a non-string time": body.replace(b'"time": "', b'"time": 1, "t": "', 1),
        "a null event": open_ + b', "event": null}',
        "a long but valid line": open_ + b', "x": "' + b"y" * 5000 + b'"}',
        "an empty line": b"",
    }


def _cases(lines: Lines) -> dict[str, Lines]:
    n = len(lines)
    cases: dict[str, Lines] = {
        "intact": lines,
        "one byte of a field edited": [
            *lines[:4],
            _field_edit(lines, 4, b'"iteration": 4', b'"iteration": 5'),
            *lines[5:],
        ],
        "a field edited, the chain rechained without the key": _rechain(
            [*lines[:4], _field_edit(lines, 4, b'"iteration": 4', b'"iteration": 5'), *lines[5:]],
            5,
            None,
        ),
        "a MAC flipped": [*lines[:2], lines[2][:-10] + b"0" + lines[2][-9:], *lines[3:]],
        "a line deleted": [*lines[:5], *lines[6:]],
        "the first line deleted": lines[1:],
        "two lines swapped": [*lines[:5], lines[6], lines[5], *lines[7:]],
        "a line duplicated": [*lines[:5], lines[5], *lines[5:]],
        "a garbage line inserted": [*lines[:5], b'{"event": "note"}\n', *lines[5:]],
        "the last line cut": lines[:-1],
        "the last newline cut": [*lines[:-1], lines[-1].rstrip(b"\n")],
        "a torn last line": [*lines, b'{"seq": 13, "ti'],
        "a line of another run, rechained with the key": _replace(
            lines, 3, lines[3].replace(b'"run": "r1"', b'"run": "r9"'), KEY
        ),
        "a line without a MAC, rechained with the key": _rechain(
            [*lines[:3], lines[3][: lines[3].rfind(b', "mac"')] + b"}\n", *lines[4:]], 4, KEY
        ),
        "a MAC in upper case, rechained with the key": _rechain(
            [*lines[:3], lines[3][:-67] + lines[3][-67:-3].upper() + b'"}\n', *lines[4:]], 4, KEY
        ),
        "the MAC's name in capitals, rechained with the key": _rechain(
            [*lines[:3], lines[3].replace(b', "mac": "', b', "MAC": "'), *lines[4:]], 4, KEY
        ),
        "empty": [],
    }
    for name, text in _json_oddities(lines).items():
        cases[f"{name}, rechained and resealed"] = _replace(lines, 3, text, KEY)
        cases[f"{name}, rechained, no MAC"] = _rechain(
            [*_strip_macs(lines[:3]), text + b"\n", *_strip_macs(lines[4:])], 4, None
        )
    assert n > 8
    return cases


def _strip_macs(lines: Lines) -> Lines:
    return [
        line[: line.rfind(b', "mac": "')] + b"}\n" if b', "mac": "' in line else line
        for line in lines
    ]


def _heads(lines: Lines) -> dict[str, dict[str, object]]:
    def head(seq: int) -> ChainHead:
        return ChainHead(seq, line_hash(lines[seq - 1]))

    n = len(lines)
    return {
        "no heads": {},
        "run.json's head": {"checkpoints": [Checkpoint(head(n), "run.json")]},
        "commit heads": {
            "checkpoints": [Checkpoint(head(3), "commit a"), Checkpoint(head(8), "b")]
        },
        "a wrong head": {"checkpoints": [Checkpoint(ChainHead(5, "e" * 64), "commit c")]},
        "a head past the end": {
            "checkpoints": [Checkpoint(ChainHead(n + 3, "e" * 64), "run.json")]
        },
        "a head of sequence 0": {"checkpoints": [Checkpoint(ChainHead(0, "e" * 64), "run.json")]},
        "the final head": {"final": Checkpoint(head(n), "run.json")},
        "the head before the stop": {"final": Checkpoint(head(n - 1), "run.json")},
        "a final head two before the end": {"final": Checkpoint(head(n - 2), "run.json")},
        "a final head of sequence 0": {"final": Checkpoint(ChainHead(0, GENESIS_HASH), "run.json")},
        "a negative final head": {"final": Checkpoint(ChainHead(-2, GENESIS_HASH), "run.json")},
        "expected head": {"expected_head": head(n)},
    }


GENESIS_HASH = "0" * 64
FORKED_HEADS = ("no heads", "the head before the stop")


def _exact(path: Path, run_id: str | None, key: RunKey | None, **heads: object) -> VerifyResult:
    marks = list(heads.get("checkpoints", []))  # type: ignore[call-overload]
    expected = heads.get("expected_head")
    if isinstance(expected, ChainHead):
        marks.append(Checkpoint(expected, "the run record"))
    final = heads.get("final")
    assert final is None or isinstance(final, Checkpoint)
    return _verify_lines(read_lines(path), marks, run_id, final, key.verify if key else None)


@pytest.fixture(params=[1, 3], ids=["one part", "three forked parts"])
def parts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The pass in one part, or cut into three checked in forked children and joined."""
    count: int = request.param
    monkeypatch.setattr(chain_scan, "usable_cores", lambda: count)
    monkeypatch.setattr(chain_scan, "_MIN_PART", 1)
    return count


@pytest.mark.parametrize("with_key", [True, False], ids=["sealed", "unsealed"])
def test_the_fast_pass_agrees_with_the_line_checker_on_every_damage(
    tmp_path: Path, with_key: bool, parts: int
) -> None:
    key = KEY if with_key else None
    lines = _write(tmp_path / "source.jsonl", key=key)
    path = tmp_path / "audit.jsonl"
    seen_fast = seen_failures = 0
    for case, damaged in _cases(lines).items():
        path.write_bytes(b"".join(damaged))
        for heads_name, heads in _heads(damaged or lines).items():
            if parts > 1 and heads_name not in FORKED_HEADS:
                continue  # a fork per check: the joins, not every head again
            for run_id in (RUN, None) if parts == 1 else (RUN,):
                for checker in ("none", "one", "batch") if key and parts == 1 else ("none",):
                    options: dict[str, object] = dict(heads, run_id=run_id)
                    if checker == "one":
                        options["check_mac"] = key.verify if key else None
                    if checker == "batch":
                        options["check_mac"] = key.verify if key else None
                        options["check_macs"] = key.verify_all if key else None
                    mac_key = key if checker != "none" else None
                    exact = _exact(path, run_id, mac_key, **heads)
                    got = verify(path, **options)  # type: ignore[arg-type]
                    where = f"{case} / {heads_name} / run {run_id} / MACs {checker}"
                    assert got == exact, where
                    fast = _fast(path, run_id, mac_key, heads)
                    if exact.ok:
                        seen_fast += fast is not None
                    else:
                        seen_failures += 1
                        assert fast is None, where
    # the pass did the work on the intact logs; the damaged ones all went to the checker
    assert seen_fast > 0 and seen_failures > 50


def _fast(
    path: Path, run_id: str | None, key: RunKey | None, heads: dict[str, object]
) -> VerifyResult | None:
    marks = list(heads.get("checkpoints", []))  # type: ignore[call-overload]
    expected = heads.get("expected_head")
    if isinstance(expected, ChainHead):
        marks.append(Checkpoint(expected, "the run record"))
    final = heads.get("final")
    assert final is None or isinstance(final, Checkpoint)
    found = _verify_fast(path, marks, run_id, final, key.verify_all if key else None)
    return None if found is None else found[0]


def test_an_intact_log_is_proved_by_the_fast_pass_alone(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _write(path, events=40)
    final = Checkpoint(ChainHead(40, line_hash(lines[-1])), "run.json")
    found = _verify_fast(path, [], RUN, final, KEY.verify_all)
    assert found is not None
    result, events = found
    assert result == VerifyResult(True, 40, final.head)
    # the events run.json is checked against, with their line numbers
    assert [(e.number, e.event) for e in events][:3] == [
        (1, "run_started"),
        (2, "goal_evaluated"),
        (4, "committed"),
    ]
    assert events[-1].event == "run_stopped" and events[-1].reason == "max_iterations"
    # the line checker finds the very same events
    assert verify_chain(path, run_id=RUN, final=final, check_mac=KEY.verify)[1] == events


def test_a_log_larger_than_one_chunk_is_checked_across_the_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: int
) -> None:
    monkeypatch.setattr(chain_scan, "_CHUNK", 1000)  # a few lines per chunk, lines split across
    path = tmp_path / "audit.jsonl"
    lines = _write(path, events=60)
    head = ChainHead(60, line_hash(lines[-1]))
    marks = [Checkpoint(ChainHead(s, line_hash(lines[s - 1])), f"commit {s}") for s in (1, 7, 33)]
    assert _verify_fast(path, marks, RUN, Checkpoint(head, "run.json"), KEY.verify_all)
    for index in (0, 5, 19, 20, 21, 30, 39, 40, 59):
        damaged = list(lines)
        damaged[index] = damaged[index].replace(b'"seq": ', b'"seq":  ', 1)
        path.write_bytes(b"".join(damaged))
        assert _verify_fast(path, marks, RUN, None, KEY.verify_all) is None
        assert verify(path, checkpoints=marks, run_id=RUN, check_macs=KEY.verify_all) == (
            _verify_lines(read_lines(path), list(marks), RUN, None, KEY.verify)
        )


def test_a_million_sized_log_of_flood_events_verifies_in_one_pass(tmp_path: Path) -> None:
    # the writer's own bounds lifted, as for a long run's own events
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, RUN, AuditLimits(max_bytes=1 << 40, max_events=1 << 40), seal=KEY.mac)
    for n in range(2000):
        log.append("proxy_request", name="llm", method="POST", path=f"/v1/{n}", status=200)
    assert log.last_head is not None
    result = verify(
        path, run_id=RUN, final=Checkpoint(log.last_head, "run.json"), check_macs=KEY.verify_all
    )
    assert result.ok and result.lines == 2000


def test_the_batch_mac_check_is_hmac_sha256_and_refuses_any_wrong_mac() -> None:
    bodies = [f'{{"seq": {n}, "text": "{"x" * n}"}}'.encode() for n in range(200)]
    macs = [hmac.new(bytes(range(32)), b, hashlib.sha256).hexdigest().encode() for b in bodies]
    assert KEY.verify_all(bodies, macs)
    assert all(KEY.verify(b, m.decode()) for b, m in zip(bodies, macs, strict=True))
    for index in (0, 99, 199):
        wrong = list(macs)
        wrong[index] = wrong[index][:-1] + (b"0" if wrong[index][-1:] != b"0" else b"1")
        assert not KEY.verify_all(bodies, wrong)
    assert not KEY.verify_all(bodies, [m.upper() for m in macs])
    assert not KEY.verify_all(bodies, macs[:-1])
    # a key longer than SHA-256's block is hashed first, as RFC 2104 says
    long_key = RunKey("r1", bytes(range(100)))
    expected = hmac.new(bytes(range(100)), bodies[3], hashlib.sha256).hexdigest()
    assert long_key.verify_all([bodies[3]], [expected.encode()])


def test_a_line_nested_deeper_than_json_follows_is_named_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _write(path, key=None)
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    path.write_bytes(b"".join([*lines[:2], deep, *lines[2:]]))
    result = verify(path, run_id=RUN)
    assert (result.ok, result.bad_line, result.reason) == (False, 3, "line 3 is not valid JSON")


def test_the_fast_pass_hands_back_the_key_events_the_line_checker_reads(
    tmp_path: Path, parts: int
) -> None:
    # run.json is checked against these: from forked parts they come back packed
    path = tmp_path / "audit.jsonl"
    _write(path, events=40)
    fast = _verify_fast(path, [], RUN, None, KEY.verify_all)
    assert fast is not None and fast[0].ok
    events = fast[1]
    expected = _key_events(read_lines(path))
    assert {e.event for e in expected} == set(chain_scan.KEY_EVENTS) - {"run_resumed"}
    assert events == expected
