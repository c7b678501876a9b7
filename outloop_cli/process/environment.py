"""Environments for the agent and the goal: built from an allow-list, never inherited whole.

Whatever outloop itself was started with (API keys, cloud credentials, CI
tokens, the D-Bus address of the keyring) stays out. What gets in:

* a short list of harmless variables tools need (``PATH``, ``HOME``, locale,
  terminal, temp dir, CA bundle paths);
* the loop's ``env`` (literal values written in the loop file);
* variables the loop names in ``pass_env`` — except any whose *name* looks
  like a credential (``*_TOKEN``, ``*_API_KEY``, ``*SECRET*``, ``SSH_AUTH_SOCK``, …):
  the loop file comes from the repo, and a repo must not be able to pull the
  user's keys out of outloop's environment by naming them;
* outloop's own variables (``OUTLOOP_RUN``, …) and the proxy variables.

Two rules hold whatever the caller passes: no ``OUTLOOP_SECRET_*`` variable
ever, and no variable whose value contains one of ``secret_values``.
"""

from __future__ import annotations

import os
import re
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
SECRET_PREFIX = "OUTLOOP_SECRET_"

# Names that carry credentials by convention. Matched on the upper-cased name.
# OTEL_EXPORTER_OTLP_*HEADERS often holds the collector's API key (outloop's own telemetry).
_CREDENTIAL_NAME_RE = re.compile(
    r"""
    (?:^|_)(?:TOKEN|TOKENS|SECRET|SECRETS|PASSWORD|PASSWD|PASS|PWD_?KEY|API_?KEY|APIKEY
            |ACCESS_?KEY|PRIVATE_?KEY|CLIENT_?SECRET|CREDENTIALS?|AUTH|COOKIE|SESSION)(?:_|$)
    | SECRET | PASSWORD | API_?KEY
    | ^(?:SSH_AUTH_SOCK|DBUS_SESSION_BUS_ADDRESS|GPG_AGENT_INFO|KRB5CCNAME|PGPASSFILE|NETRC)$
    | ^OTEL_EXPORTER_OTLP_(?:\w+_)?HEADERS$
    """,
    re.VERBOSE,
)


def is_credential_name(name: str) -> bool:
    """Whether a variable name looks like it carries a credential (or a way to one)."""
    upper = name.upper()
    return upper.startswith(SECRET_PREFIX) or _CREDENTIAL_NAME_RE.search(upper) is not None


def refused_pass_env(pass_env: Iterable[str]) -> list[str]:
    """The names in ``pass_env`` that :func:`build_env` will not pass, for a warning."""
    return [name for name in pass_env if is_credential_name(name)]


def build_env(
    *,
    pass_env: Iterable[str] = (),
    extra: Iterable[tuple[str, str]] = (),
    outloop_vars: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
    secret_values: Iterable[str] = (),
) -> dict[str, str]:
    source = os.environ if source is None else source
    passed = {name for name in pass_env if not is_credential_name(name)}
    allowed = set(DEFAULT_ALLOWED) | passed
    env = {
        name: value
        for name, value in source.items()
        if name in allowed or name.startswith(DEFAULT_ALLOWED_PREFIXES)
    }
    env.setdefault("PATH", FALLBACK_PATH)
    env.update(dict(extra))
    env.update(outloop_vars or {})
    # whatever was added above, secrets handed to outloop by CI are never passed on
    for name in [n for n in env if n.startswith(SECRET_PREFIX)]:
        del env[name]
    values = [s for s in secret_values if s]
    if values:
        for name in [n for n, value in env.items() if any(s in value for s in values)]:
            del env[name]
    return env
