"""Children started in a fresh session keyring: each its own, the runner keeps the user's."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from outloop_cli.errors import CouldNotRun
from outloop_cli.process import session_keyring
from outloop_cli.process.forked import run_forked

# KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, without creating one
SESSION_ID = (
    "import ctypes, os; s = ctypes.CDLL(None).syscall; s.restype = ctypes.c_long; "
    "print(s({nr}, 0, ctypes.c_long(-3), ctypes.c_long(0)))"
)
_NR = session_keyring._SYS_KEYCTL[os.uname().machine]


def _own_session() -> int:
    syscall = ctypes.CDLL(None).syscall
    syscall.restype = ctypes.c_long
    return int(syscall(_NR, 0, ctypes.c_long(-3), ctypes.c_long(0)))


def _child_session() -> int:
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", SESSION_ID.format(nr=_NR)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )

    proc = session_keyring.popen_in_fresh_keyring(start)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return int(out)


def test_every_child_has_a_new_keyring_and_this_process_keeps_its_own() -> None:
    mine = _own_session()
    plain = subprocess.run(
        [sys.executable, "-c", SESSION_ID.format(nr=_NR)], capture_output=True, check=True
    )
    # control: a child started the ordinary way shares the runner's keyring
    assert int(plain.stdout) == mine

    first, second = _child_session(), _child_session()

    assert len({mine, first, second}) == 3
    assert _own_session() == mine


def test_what_the_start_raises_is_raised_to_the_caller() -> None:
    def start() -> subprocess.Popen[bytes]:
        raise CouldNotRun("no such program")

    with pytest.raises(CouldNotRun, match="no such program"):
        session_keyring.popen_in_fresh_keyring(start)
    # the thread still serves the next start
    assert _child_session() != _own_session()


def test_a_forked_copy_of_the_process_starts_its_own_starting_thread() -> None:
    _child_session()  # the parent's thread exists now

    def in_child() -> tuple[int, int]:
        return _child_session(), _own_session()

    results = run_forked([lambda: (0, 0), in_child])
    assert results[1] is not None
    child_keyring, child_own = results[1]
    assert child_keyring not in (child_own, 0)
