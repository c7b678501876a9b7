"""The record writer: run.json off the loop's thread, never backwards, all of it by close."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from outloop_cli.store import atomic
from outloop_cli.store.record_writer import RecordWriter


def test_a_submitted_snapshot_is_on_disk_after_close(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    writer = RecordWriter(path)
    writer.submit(b'{"n": 1}')
    writer.close()
    assert path.read_bytes() == b'{"n": 1}'


def test_the_newest_snapshot_wins_and_nothing_older_lands_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread is held inside its write of snapshot 1 while 2, 3 and a synchronous 4 come."""
    path = tmp_path / "run.json"
    inside = threading.Event()
    release = threading.Event()
    written: list[bytes] = []
    real_write = atomic.atomic_write_bytes

    def slow_write(target: Path, data: bytes, *, durable: bool = True) -> None:
        if data == b"1":
            inside.set()
            assert release.wait(10)
        written.append(data)
        real_write(target, data, durable=durable)

    monkeypatch.setattr("outloop_cli.store.record_writer.atomic_write_bytes", slow_write)
    writer = RecordWriter(path)
    writer.submit(b"1")
    assert inside.wait(10)
    writer.submit(b"2")
    writer.submit(b"3")
    # the synchronous write waits for the thread's write in progress, then supersedes 2 and 3
    sync = threading.Thread(target=writer.write, args=(b"4",))
    sync.start()
    release.set()
    sync.join(10)
    writer.close()
    assert path.read_bytes() == b"4"
    # 2 was replaced in the queue by 3; 3 was dropped once 4 was on disk (or written before it)
    assert written[0] == b"1" and written[-1] == b"4" and b"2" not in written


def test_a_late_submit_after_close_is_still_written(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    writer = RecordWriter(path)
    writer.submit(b"a")
    writer.close()
    writer.submit(b"b")
    assert path.read_bytes() == b"b"


def test_a_write_the_thread_could_not_make_is_raised_to_the_next_caller(tmp_path: Path) -> None:
    """A record directory that is gone: the failure is not swallowed by the thread."""
    path = tmp_path / "gone" / "run.json"
    writer = RecordWriter(path)
    (tmp_path / "gone").write_text("a file where the directory should be")
    writer.submit(b"x")
    with pytest.raises(OSError):
        writer.close()


def test_close_without_any_submit_starts_no_thread(tmp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    writer = RecordWriter(tmp_path / "run.json")
    writer.write(b"sync only")
    writer.close()
    assert "outloop-record-writer" not in {t.name for t in threading.enumerate()} - before
    assert (tmp_path / "run.json").read_bytes() == b"sync only"
