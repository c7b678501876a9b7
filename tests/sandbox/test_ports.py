"""The Unix listeners a sandbox can reach (sandbox/ports.py)."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from outloop_cli.sandbox import ports


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_a_listener_is_for_its_owner_alone_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        sock = ports.unix_listener(tmp_path / "s.sock")
        # the process-wide umask is left as it was: other threads' files get what they asked
        assert os.umask(mask) == mask
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE((tmp_path / "s.sock").stat().st_mode) == 0o600
    finally:
        sock.close()


def test_files_other_threads_make_meanwhile_keep_their_modes(tmp_path: Path) -> None:
    """The umask is the whole process's: a listener made on one thread must not narrow it."""
    old = os.umask(0o022)
    stop = threading.Event()
    modes: set[int] = set()

    def make_files() -> None:
        n = 0
        while not stop.is_set():
            path = tmp_path / f"f{n}"
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
            modes.add(stat.S_IMODE(path.stat().st_mode))
            path.unlink()
            n += 1

    maker = threading.Thread(target=make_files)
    maker.start()
    try:
        for n in range(300):
            ports.unix_listener(tmp_path / f"s{n}.sock").close()
    finally:
        stop.set()
        maker.join()
        os.umask(old)
    assert modes == {0o644}


def test_a_listener_refuses_descriptors_unless_it_takes_them(tmp_path: Path) -> None:
    refusing = ports.unix_listener(tmp_path / "r.sock")
    taking = ports.unix_listener(tmp_path / "t.sock", takes_descriptors=True)
    read, write = os.pipe()
    try:
        for path, refused in ((tmp_path / "r.sock", True), (tmp_path / "t.sock", False)):
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
                if refused:
                    with pytest.raises(PermissionError):
                        socket.send_fds(client, [b"x"], [read])
                else:
                    socket.send_fds(client, [b"x"], [read])
    finally:
        os.close(read)
        os.close(write)
        refusing.close()
        taking.close()
