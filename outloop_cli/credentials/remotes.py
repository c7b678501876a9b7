"""One spelling of a git remote, so that a policy pattern and a repo's remotes compare alike.

Import-free: the policy's declaration checks its patterns with it, and its
matching compares them with the repo's remotes.
"""

from __future__ import annotations

import re

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# git's scp-like syntax: [user@]host:path, with no slash before the first colon
_SCP_RE = re.compile(r"^(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+):(.*)$", re.DOTALL)
_DEFAULT_PORTS = {"https": "443", "http": "80", "ssh": "22", "git": "9418", "git+ssh": "22"}


def has_credentials(text: str) -> bool:
    """A URL with ``user:password@`` in it."""
    match = _SCHEME_RE.match(text)
    if match is None:
        return False
    authority = match.group(2).split("/", 1)[0]
    return "@" in authority and ":" in authority.rsplit("@", 1)[0]


def normalize_remote(url: str) -> str | None:
    """``host[:port]/path`` for a network remote, None for a local path.

    ``https://user:tok@GitHub.com:443/agency/x.git/`` and ``git@github.com:agency/x``
    both give ``github.com/agency/x``: scheme, credentials, default port,
    trailing ``.git`` and slashes go; the host is lower-cased.
    """
    text = url.strip()
    if not text:
        return None
    match = _SCHEME_RE.match(text)
    if match is not None:
        scheme = match.group(1).lower()
        if scheme == "file":
            return None
        rest = match.group(2)
        authority, _, path = rest.partition("/")
        authority = authority.rsplit("@", 1)[-1]
        host, port = _split_port(authority)
        if port and _DEFAULT_PORTS.get(scheme) == port:
            port = ""
    elif text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return None
    else:
        scp = _SCP_RE.match(text)
        if scp is None:
            # host/path without a scheme: how policy patterns are usually written
            host, _, path = text.partition("/")
            host, port = _split_port(host)
        else:
            host, path, port = scp.group(1), scp.group(2), ""
            # `host:8443/path` is read as a port: how people write patterns, and a
            # path starting with a bare number is rarer than a non-default port
            digits = re.match(r"^([0-9]+)(?:/|$)", path)
            if digits:
                port, path = digits.group(1), path[len(digits.group(1)) :]
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")].rstrip("/")
    host = host.lower()
    if not host:
        return None
    where = f"{host}:{port}" if port else host
    return f"{where}/{path}" if path else where


def _split_port(authority: str) -> tuple[str, str]:
    if authority.startswith("["):
        host, _, rest = authority.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else ""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return authority, ""
