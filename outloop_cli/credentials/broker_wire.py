"""The broker's socket protocol: one JSON line in, one JSON line out, per connection.

Kept apart from the broker so that the credential helper (a short-lived
process git starts for every credential request) imports next to nothing:
the modules ``json`` and ``socket`` would double the helper's start (``re``,
``enum`` and their kin come with them), so the client speaks through the C
parts they are built on, ``_json`` and ``_socket``, which produce and accept
exactly what ``json.dumps``/``json.loads`` and ``socket.socket`` do. On an
interpreter without them the same pure-Python pieces of ``json`` and the
``socket`` module are used.
"""

from __future__ import annotations

try:
    from _json import encode_basestring_ascii, make_scanner
    from _socket import AF_UNIX, SHUT_WR, SOCK_STREAM
    from _socket import socket as _new_socket

    _PYTHON_DECODER = None
except ImportError:  # not CPython: the same functions, in Python
    from json.decoder import JSONDecoder
    from json.encoder import py_encode_basestring_ascii as encode_basestring_ascii
    from json.scanner import py_make_scanner as make_scanner  # type: ignore[attr-defined,no-redef]
    from socket import AF_UNIX, SHUT_WR, SOCK_STREAM
    from socket import socket as _new_socket  # type: ignore[assignment]

    _PYTHON_DECODER = JSONDecoder()

# `typing` alone is a tenth of the helper's start-up; type checkers still see it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# set in the environment of git (and tools) that may ask the broker, never elsewhere
ENV_SOCKET = "OUTLOOP_BROKER_SOCKET"
ENV_CAPABILITY = "OUTLOOP_CAPABILITY"
MAX_MESSAGE = 64 * 1024
WIRE_VERSION = 1


class BrokerUnavailable(Exception):
    """No broker answered: the run ended, or this process was not started by one."""


def ask(socket_path: str, request: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    message = encode({"v": WIRE_VERSION, **request}) + b"\n"
    if len(message) > MAX_MESSAGE:
        raise BrokerUnavailable("request too large")
    try:
        conn = _new_socket(AF_UNIX, SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(socket_path)
            conn.sendall(message)
            conn.shutdown(SHUT_WR)
            data = bytearray()
            while len(data) <= MAX_MESSAGE:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            conn.close()
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach the run's broker ({exc.strerror or exc})") from None
    reply = decode(bytes(data))
    if not isinstance(reply, dict):
        raise BrokerUnavailable("the broker's answer was not readable")
    return reply


def encode(request: dict[str, Any]) -> bytes:
    """``json.dumps(request).encode()`` for a flat object of strings, numbers, booleans, null."""
    items = []
    for key, value in request.items():
        items.append(f"{encode_basestring_ascii(str(key))}: {_scalar(value)}")
    return ("{" + ", ".join(items) + "}").encode()


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return str(encode_basestring_ascii(value))
    if isinstance(value, int):
        return int.__repr__(value)
    raise TypeError(f"the broker's wire carries no {type(value).__name__}")


class _Decoding:
    """What ``json.loads`` gives its scanner by default (strict strings, NaN and Infinity)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__

    def __init__(self) -> None:
        self.memo: dict[str, str] = {}


_context: Any = _PYTHON_DECODER or _Decoding()
_scan = make_scanner(_context)
_WHITESPACE = " \t\n\r"


def decode(data: bytes) -> Any:
    """``json.loads(data)`` for the broker's UTF-8 answer; unreadable → ``BrokerUnavailable``."""
    try:
        text = data.decode("utf-8")
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = _scan(text, start)
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        raise BrokerUnavailable("the broker's answer was not readable") from None
    if text[end:].strip(_WHITESPACE):
        raise BrokerUnavailable("the broker's answer was not readable")
    return value
