"""The broker's socket protocol: one JSON line in, one JSON line out, per connection.

Kept apart from the broker so that the credential helper (a short-lived
process git starts) imports nothing heavier than ``json`` and ``socket``.
"""

from __future__ import annotations

import json
import socket

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
    message = json.dumps({"v": WIRE_VERSION, **request}).encode() + b"\n"
    if len(message) > MAX_MESSAGE:
        raise BrokerUnavailable("request too large")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(socket_path)
            conn.sendall(message)
            conn.shutdown(socket.SHUT_WR)
            data = bytearray()
            while len(data) <= MAX_MESSAGE:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach the run's broker ({exc.strerror or exc})") from None
    try:
        reply = json.loads(bytes(data))
    except ValueError:
        raise BrokerUnavailable("the broker's answer was not readable") from None
    if not isinstance(reply, dict):
        raise BrokerUnavailable("the broker's answer was not readable")
    return reply
