"""Which hosts are this machine: the one place plain http (no TLS) is allowed for a credential.

Import-free on purpose: the git credential helper imports it on every call.
"""

from __future__ import annotations

import re

_LOOPBACK_NAMES = ("localhost", "::1")
_LOOPBACK_V4 = re.compile(r"127(?:\.\d{1,3}){3}")


def is_loopback(host: str) -> bool:
    """``host`` without a port; IPv6 brackets allowed."""
    host = host.strip("[]").lower()
    return host in _LOOPBACK_NAMES or _LOOPBACK_V4.fullmatch(host) is not None
