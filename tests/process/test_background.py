"""process/background.py: a helper that serves beside a command, stopped with all it started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from outloop_cli.errors import CouldNotRun
from outloop_cli.process.background import Background


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); its state in /proc says it is gone
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, deadline: float = 10.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_stdin_reaches_the_child_and_stop_ends_its_whole_session(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    script = f'read value; echo "got $value"; sleep 300 & echo $! > {marker}; wait'
    helper = Background(
        ["sh", "-c", script], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log_path=tmp_path / "log"
    )
    with helper:
        helper.send(b"hello\n")
        pid = helper.wait_for(
            lambda: (
                int(marker.read_text()) if marker.exists() and marker.read_text().strip() else None
            ),
            timeout=10,
            what="starting its grandchild",
        )
        assert _alive(pid)
    assert _wait_gone(helper.pid) and _wait_gone(pid)
    assert (tmp_path / "log").read_text().startswith("got hello")


def test_waiting_on_a_child_that_exits_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "helper.log"
    with (
        Background(
            ["sh", "-c", "echo broken config; exit 4"], cwd=tmp_path, env={}, log_path=log
        ) as helper,
        pytest.raises(CouldNotRun) as failed,
    ):
        helper.wait_for(lambda: None, timeout=10, what="listening")
    assert "exited with 4 before listening" in failed.value.message
    assert str(log) in (failed.value.hint or "")


def test_a_program_that_cannot_start_is_could_not_run(tmp_path: Path) -> None:
    with pytest.raises(CouldNotRun, match="cannot start"):
        Background(["/nonexistent/crm"], cwd=tmp_path, env={}, log_path=tmp_path / "log")


def test_the_log_is_the_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    """A helper's log can hold a secret of its user's: the dashboard prints its token URL."""
    log = tmp_path / "logs" / "dashboard.log"
    previous = os.umask(0o022)
    try:
        with Background(
            ["sh", "-c", "echo http://127.0.0.1:1/?token=t0k3n"],
            cwd=tmp_path,
            env={},
            log_path=log,
        ) as helper:
            helper.wait_for(lambda: "t0k3n" in log.read_text() or None, timeout=10, what="writing")
    finally:
        os.umask(previous)
    assert log.stat().st_mode & 0o777 == 0o600
    assert log.parent.stat().st_mode & 0o777 == 0o700


def test_a_link_planted_where_the_log_goes_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    log = tmp_path / "helper.log"
    log.symlink_to(target)
    with pytest.raises(CouldNotRun) as refused:
        Background(["true"], cwd=tmp_path, env={}, log_path=log)
    assert str(log) in refused.value.message
    assert target.read_text() == "keep\n"
