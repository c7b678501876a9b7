"""The broker's wire, as the credential helper speaks it: exactly json.dumps and json.loads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from outloop_cli.credentials import broker_wire

REQUESTS = [
    {"v": 1, "op": "git", "capability": "c-1", "protocol": "https", "host": "h:8443", "path": None},
    {"name": 'quote " backslash \\ newline \n nul \x00 ünï \u2028 😀', "flag": True, "off": False},
    {"n": -3, "big": 10**30, "empty": ""},
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_requests_are_encoded_as_json_dumps_encodes_them(request_: dict[str, object]) -> None:
    assert broker_wire.encode(request_) == json.dumps(request_).encode()


def test_only_the_values_the_wire_carries_are_encoded() -> None:
    with pytest.raises(TypeError):
        broker_wire.encode({"x": 1.5})
    with pytest.raises(TypeError):
        broker_wire.encode({"x": ["a"]})


ANSWERS = [
    b'{"ok": true, "password": "p\\u00e9\\n", "expires": 1790000000, "username": null}\n',
    b'  {"ok": false, "reason": "host_not_allowed"}  ',
    b'{"nested": {"list": [1, 2.5, -0.0, 1e400, NaN, Infinity]}}',
    '{"é": "ü"}'.encode(),
    b"[1, 2]",
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_answers_are_decoded_as_json_loads_decodes_them(answer: bytes) -> None:
    assert repr(broker_wire.decode(answer)) == repr(json.loads(answer))


@pytest.mark.parametrize(
    "answer",
    [b"", b"{", b"{} trailing", b"\xff\xfe", b'{"a": "\x01"}', b"[" * 100_000, b"{'a': 1}"],
)
def test_an_unreadable_answer_is_no_answer(answer: bytes) -> None:
    with pytest.raises(broker_wire.BrokerUnavailable):
        broker_wire.decode(answer)


def test_ask_sends_one_line_and_reads_one_answer(tmp_path: Path) -> None:
    path = tmp_path / "broker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            received.append(data)
            conn.sendall(b'{"ok": true, "password": "s3cret"}\n')

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        reply = broker_wire.ask(str(path), {"op": "git", "host": "h"})
    finally:
        thread.join(timeout=10)
        server.close()
    assert reply == {"ok": True, "password": "s3cret"}
    assert received == [b'{"v": 1, "op": "git", "host": "h"}\n']


def test_no_broker_is_broker_unavailable(tmp_path: Path) -> None:
    with pytest.raises(broker_wire.BrokerUnavailable, match="cannot reach"):
        broker_wire.ask(str(tmp_path / "none.sock"), {"op": "git"})


def test_the_wire_imports_neither_json_nor_socket() -> None:
    code = (
        "import sys\n"
        "import outloop_cli.credentials.broker_wire\n"
        "print(sorted({'json', 'socket', 're', 'enum'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]"
