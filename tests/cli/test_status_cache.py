"""`outloop status` from its listing cache: the same answer as from the records, read once.

The runs are real (`outloop run` of real loops); the listings run in-process
where a test counts which records were read, and as the real CLI otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from outloop_cli.commands import status as status_commands
from outloop_cli.commands.status import RunSummary, list_all_runs, list_runs
from outloop_cli.store import listing_cache
from outloop_cli.store.listing_cache import ListingCache, cache_path, file_key
from outloop_cli.store.runs import RunStore
from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, counter_goal, loop_yaml, run_cli, runs_dir

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def two_runs(make_repo: RepoFactory) -> Path:
    """A repository with two finished runs of two loops, older than the racy second."""
    repo = make_repo(
        {
            ".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2)),
            ".outloop/other.yml": loop_yaml(
                agent_cmd("counter_agent.py"), "false", limits={"max_iterations": 2}
            ),
        }
    )
    assert run_cli(repo, "run", "fix").returncode == 0
    assert run_cli(repo, "run", "other").returncode == 1
    # past the second in which a record is too new to be told apart from an edit of it
    time.sleep(listing_cache.RACY_NS / 1e9 + 0.1)
    return repo


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The run ids whose run.json a listing reads."""
    seen: list[str] = []
    original = RunStore.read_with_stat

    def counting(self: RunStore, run_id: str) -> tuple[Any, os.stat_result]:
        seen.append(run_id)
        return original(self, run_id)

    monkeypatch.setattr(RunStore, "read_with_stat", counting)
    yield seen


def _run_json(repo: Path, index: int) -> Path:
    return sorted(runs_dir(repo).iterdir())[index] / "run.json"


def _replace_record(path: Path, **changes: Any) -> None:
    """Replace run.json by a new file, as every write outloop makes does."""
    replacement = path.with_name("run.json.new")
    replacement.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    replacement.replace(path)


def _cache(repo: Path) -> dict[str, Any]:
    return dict(json.loads(cache_path(runs_dir(repo)).read_text()))


def test_a_second_listing_reads_no_finished_record_and_gives_the_same_runs(
    two_runs: Path, reads: list[str]
) -> None:
    cold = list_runs(two_runs, now=NOW)
    assert len(reads) == 2
    assert [s.state for s in cold] == ["finished", "finished"]
    assert sorted(_cache(two_runs)["runs"]) == [s.run_id for s in cold]

    reads.clear()
    warm = list_runs(two_runs, now=NOW)
    assert reads == []
    assert warm == cold
    # the age is worked out at each listing, from the start the cache keeps
    later = list_runs(two_runs, now=NOW.replace(year=2031))
    assert [s.age for s in later] == [s.age + 365 * 86400 for s in cold if s.age is not None]


def test_the_loop_filter_reads_from_the_cache_too(two_runs: Path, reads: list[str]) -> None:
    list_runs(two_runs, now=NOW)
    reads.clear()
    [other] = list_runs(two_runs, loop="other", now=NOW)
    assert (other.loop, other.stop_reason, other.goal) == ("other", "max_iterations", "fail")
    assert reads == []


def test_a_record_replaced_or_edited_in_place_is_read_again(
    two_runs: Path, reads: list[str]
) -> None:
    list_runs(two_runs, now=NOW)
    # replaced, as every write outloop makes does
    _replace_record(_run_json(two_runs, 0), stop_detail="replaced by hand")
    # edited in place, to the very same size
    edited = _run_json(two_runs, 1)
    text = edited.read_text()
    assert '"loop": "other"' in text
    with edited.open("r+") as handle:
        handle.write(text.replace('"loop": "other"', '"loop": "OTHER"'))
    reads.clear()

    first, second = list_runs(two_runs, now=NOW)
    assert sorted(reads) == sorted([first.run_id, second.run_id])
    assert first.stop_detail == "replaced by hand"
    assert second.loop == "OTHER"


def test_a_record_too_new_to_tell_apart_from_an_edit_is_not_kept(tmp_path: Path) -> None:
    cache = ListingCache(tmp_path / "listing-cache.json", "v", {})
    key = (1, 2, 3, 10**18, 10**18)
    cache.put("run", key, {"a": 1}, read_at_ns=10**18 + listing_cache.RACY_NS - 1)
    assert cache.get("run", key) is None
    cache.put("run", key, {"a": 1}, read_at_ns=10**18 + listing_cache.RACY_NS)
    assert cache.get("run", key) == {"a": 1}
    # another version of the file is another key
    assert cache.get("run", (1, 2, 3, 10**18, 10**18 + 1)) is None


def test_a_live_record_is_never_kept(two_runs: Path, reads: list[str]) -> None:
    _replace_record(_run_json(two_runs, 0), state="running")
    time.sleep(listing_cache.RACY_NS / 1e9 + 0.1)

    first = list_runs(two_runs, now=NOW)
    # nobody holds its lock: a crashed run, which a resume or a live runner may change
    assert first[0].state == "crashed"
    assert first[0].run_id not in _cache(two_runs)["runs"]
    reads.clear()
    list_runs(two_runs, now=NOW)
    assert reads == [first[0].run_id]


DAMAGED: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "not JSON": lambda doc, run: b"{not json",
    "nested deeper than the parser goes": lambda doc, run: b"[" * 200_000,
    "another format": lambda doc, run: {**doc, "format": 999},
    "another version": lambda doc, run: {**doc, "version": "0.0.0-other"},
    "a key that is no key": lambda doc, run: _with_entry(doc, run, key=["a", 2, 3, 4, 5]),
    "a number that is a bool": lambda doc, run: _with_summary(doc, run, iteration=True),
    "NaN": lambda doc, run: _with_summary(doc, run, duration=float("nan")),
    "a live state": lambda doc, run: _with_summary(doc, run, state="running"),
    "another run's summary": lambda doc, run: _with_summary(doc, run, run_id="20200101-x"),
    "a field too many": lambda doc, run: _with_summary(doc, run, extra="x"),
    "an approval": lambda doc, run: _with_summary(doc, run, approval={"gate": "push"}),
}


def _with_entry(doc: dict[str, Any], run: str, **change: Any) -> dict[str, Any]:
    runs = dict(doc["runs"])
    runs[run] = {**runs[run], **change}
    return {**doc, "runs": runs}


def _with_summary(doc: dict[str, Any], run: str, **change: Any) -> dict[str, Any]:
    return _with_entry(doc, run, summary={**doc["runs"][run]["summary"], **change})


def test_a_damaged_cache_is_not_believed_and_is_written_anew(
    two_runs: Path, reads: list[str]
) -> None:
    truth = list_runs(two_runs, now=NOW)
    path = cache_path(runs_dir(two_runs))
    for damage, make in DAMAGED.items():
        damaged = make(json.loads(path.read_text()), truth[0].run_id)
        path.write_bytes(damaged if isinstance(damaged, bytes) else json.dumps(damaged).encode())
        reads.clear()

        assert list_runs(two_runs, now=NOW) == truth, damage
        assert truth[0].run_id in reads, damage
        reads.clear()
        assert list_runs(two_runs, now=NOW) == truth, damage
        assert reads == [], damage


def test_a_forged_entry_reaches_the_terminal_only_as_safe_text(two_runs: Path) -> None:
    """Whoever can write the cache can write run.json too; either way, no escape is printed."""
    truth = list_runs(two_runs, now=NOW)
    path = cache_path(runs_dir(two_runs))
    doc = json.loads(path.read_text())
    hostile = "\x1b]52;c;cGF5bG9hZA==\x07\x1b[2Jgone\nFAKE  row"
    forged = _with_summary(doc, truth[0].run_id, loop=hostile, stop_reason=hostile)
    path.write_text(json.dumps(forged))

    [shown] = [s for s in list_runs(two_runs, now=NOW) if s.run_id == truth[0].run_id]
    assert shown.loop == hostile  # believed: the key matches the file
    done = run_cli(two_runs, "status")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert len(done.stdout.splitlines()) == 3


def test_a_cache_that_cannot_be_written_is_no_error(two_runs: Path) -> None:
    cache_path(runs_dir(two_runs)).mkdir()
    done = run_cli(two_runs, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["state"] for line in done.stdout.splitlines()] == ["finished"] * 2
    assert done.stderr == ""


def test_a_deleted_run_leaves_the_cache(two_runs: Path) -> None:
    first, second = list_runs(two_runs, now=NOW)
    shutil.rmtree(runs_dir(two_runs) / first.run_id)
    assert [s.run_id for s in list_runs(two_runs, now=NOW)] == [second.run_id]
    assert sorted(_cache(two_runs)["runs"]) == [second.run_id]


def test_status_all_uses_each_repositorys_cache(two_runs: Path, reads: list[str]) -> None:
    cold = [row.summary for row in list_all_runs()]
    assert {s.state for s in cold} == {"finished"} and len(cold) == 2
    reads.clear()
    warm = [row.summary for row in list_all_runs()]
    assert reads == []
    assert [dataclasses.replace(s, age=None) for s in warm] == [
        dataclasses.replace(s, age=None) for s in cold
    ]


def test_the_cli_lists_the_same_runs_warm_as_cold(two_runs: Path) -> None:
    cold = run_cli(two_runs, "status", "--json")
    assert cache_path(runs_dir(two_runs)).is_file()
    warm = run_cli(two_runs, "status", "--json")
    assert cold.returncode == warm.returncode == 0

    def without_age(out: str) -> list[dict[str, Any]]:
        return [{**json.loads(line), "age": None} for line in out.splitlines()]

    assert without_age(warm.stdout) == without_age(cold.stdout)
    assert len(without_age(warm.stdout)) == 2


def test_every_field_of_a_summary_is_kept_but_its_age() -> None:
    names = {field.name for field in dataclasses.fields(RunSummary)}
    assert set(status_commands._CACHED_TYPES) == names - {"age"}


def test_a_kept_entry_names_the_file_it_was_made_from(two_runs: Path) -> None:
    list_runs(two_runs, now=NOW)
    entries = _cache(two_runs)["runs"]
    for run_id, entry in entries.items():
        stat = (runs_dir(two_runs) / run_id / "run.json").stat()
        assert tuple(entry["key"]) == file_key(stat)


def test_a_record_just_written_is_not_kept(
    two_runs: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The racy rule on the real path: the time it is measured from is taken before the read."""
    before = list_runs(two_runs, now=NOW)
    assert sorted(_cache(two_runs)["runs"]) == [s.run_id for s in before]
    fresh = _run_json(two_runs, 0)
    _replace_record(fresh, stop_detail="written just now")
    # wide enough for a loaded machine between the write above and the listing's read
    monkeypatch.setattr(listing_cache, "RACY_NS", 5_000_000_000)
    first, second = list_runs(two_runs, now=NOW)
    assert first.stop_detail == "written just now"
    # the other run's record, unchanged, stays as it was kept
    assert sorted(_cache(two_runs)["runs"]) == [second.run_id]


def test_a_record_holding_a_lone_surrogate_is_listed_and_kept(two_runs: Path) -> None:
    """JSON may escape a lone surrogate, which UTF-8 cannot hold; the cache holds it escaped."""
    path = _run_json(two_runs, 0)
    # json.dumps writes it as the escape \\ud800 (ASCII), as a hand or another tool may
    _replace_record(path, stop_detail="half a pair: \ud800")
    assert "\\ud800" in path.read_text()
    time.sleep(listing_cache.RACY_NS / 1e9 + 0.1)

    for _ in ("cold", "warm"):
        done = run_cli(two_runs, "status", "--json")
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 2
    assert path.parent.name in _cache(two_runs)["runs"]


def test_an_unreadable_run_is_listed_whatever_the_loop_filter(
    two_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = list_runs(two_runs, now=NOW)
    _run_json(two_runs, 0).write_text("{damaged")
    for loop in ("fix", "other"):
        listed = list_runs(two_runs, loop=loop, now=NOW)
        assert first.run_id in [s.run_id for s in listed], loop
        [damaged] = [s for s in listed if s.run_id == first.run_id]
        assert damaged.state == "unreadable"
    # --all knows its loop from the run index
    [row] = [r for r in list_all_runs(loop="fix") if r.summary.run_id == first.run_id]
    assert (row.summary.state, row.summary.loop) == ("unreadable", "fix")


# what a summary is made from: a change to it that can change a summary comes with a new
# SUMMARY_FORMAT; one that cannot (a refactoring) records the new digest only
SUMMARY_CODE = {
    "format": 1,
    "sha256": "dd6b905296c955bbf142dd2ca1c7f71ae78f794f2403f58aec9d0d8de8b64f36",
}


def test_the_summary_format_changes_with_the_code_that_makes_summaries() -> None:
    import hashlib
    import inspect

    from outloop_cli.store import run_listing

    parts = [
        inspect.getsource(function)
        for function in (
            status_commands.summarize,
            status_commands.display_state,
            status_commands.failing_count,
            status_commands._summary_to_cache,
            status_commands._summary_from_cache,
        )
    ]
    parts.append(inspect.getsource(run_listing))
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    assert (status_commands.SUMMARY_FORMAT, digest) == (
        SUMMARY_CODE["format"],
        SUMMARY_CODE["sha256"],
    ), (
        "the code that makes a run's summary changed: if a summary can come out "
        "differently, bump SUMMARY_FORMAT in outloop_cli/commands/status.py (so no cache "
        "made by the old code is believed); then record the format and digest in SUMMARY_CODE"
    )
