"""Environments for the agent and the goal: built from an allow-list, never inherited whole.

Whatever outloop itself was started with (API keys, cloud credentials, CI
tokens) stays out unless the loop names a variable in ``pass_env``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# Enough for tools to find programs, write temp files, pick a locale and a
# terminal type, and for Python/Node toolchains installed per-user to work.
DEFAULT_ALLOWED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
DEFAULT_ALLOWED_PREFIXES = ("LC_",)
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"


def build_env(
    *,
    pass_env: Iterable[str] = (),
    extra: Iterable[tuple[str, str]] = (),
    outloop_vars: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    source = os.environ if source is None else source
    allowed = set(DEFAULT_ALLOWED) | set(pass_env)
    env = {
        name: value
        for name, value in source.items()
        if name in allowed or name.startswith(DEFAULT_ALLOWED_PREFIXES)
    }
    # secrets handed to outloop by CI are never passed on, even if named
    for name in [n for n in env if n.startswith("OUTLOOP_SECRET_")]:
        del env[name]
    env.setdefault("PATH", FALLBACK_PATH)
    env.update(dict(extra))
    env.update(outloop_vars or {})
    return env
