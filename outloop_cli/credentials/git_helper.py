"""outloop as git's credential helper (``via: git``, and outloop's own push).

Git is pointed at the helper through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/
``GIT_CONFIG_VALUE_n`` in the environment of the processes that may use it (the
agent's, when the loop asks for ``via: git``; outloop's push), never through a
config file:

- nothing is written into the user's repository: a worktree shares
  ``.git/config`` with the user's checkout, and per-worktree config would need
  ``extensions.worktreeConfig`` switched on in it (which older tools refuse);
- it dies with the processes that carry it, so a crash leaves no helper behind
  pointing at a dead socket;
- environment config is read after every config file, so the empty
  ``credential.helper`` reset clears any helper a repo, an agent or the user's
  ``~/.gitconfig`` installed, and ours is the only one git asks.

Ours is installed for every host (after the reset), not only as
``credential.https://<host>.helper``: git then asks *us* about any other host
too (a remote rewritten by ``url.<base>.insteadOf``, an ``lfs.url`` from a
committed ``.lfsconfig``), and we refuse with ``quit=1`` and an audit event,
where a host-scoped helper would have let the attempt pass unrecorded.

git starts the helper (``credentials/helper_main.py``) for every request, so
what it imports is kept to git's protocol and the broker's wire
(``git_answer.py``).

The helper finds the broker's socket and its capability in the environment
git passes down. The agent's environment holds a capability only when the loop
asked for ``via: git`` or ``via: helper``; the capability of outloop's own
push lives only in the environment of that push.
"""

from __future__ import annotations

import shlex
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# the answering half lives in git_answer.py, light enough for git to start per request
from outloop_cli.credentials.git_answer import DEFAULT_USERNAME as DEFAULT_USERNAME
from outloop_cli.credentials.git_answer import HelperAnswer as HelperAnswer
from outloop_cli.credentials.git_answer import answer as answer
from outloop_cli.credentials.hosts import is_loopback


@dataclass(frozen=True)
class GitScope:
    """Where one git credential may be sent: protocol, host[:port] and, if set, one repo path."""

    credential: str
    host: str
    path: str | None = None

    def refusal(self, protocol: str | None, host: str | None, path: str | None) -> str | None:
        """None when the request fits this scope, else the reason it does not."""
        if not host or host.lower() != self.host.lower():
            return "host_not_allowed"
        if protocol != "https" and not (protocol == "http" and is_loopback(_hostname(host))):
            return "protocol_not_allowed"
        if self.path is not None and normalise_path(path or "") != self.path:
            return "path_not_allowed"
        return None


def normalise_path(path: str) -> str:
    """``/org/repo.git/`` and ``org/repo`` name the same repository."""
    path = urllib.parse.unquote(path).strip("/")
    return path[: -len(".git")] if path.endswith(".git") else path


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


HELPER_MODULE = "outloop_cli.credentials.helper_main"
# where this outloop_cli package is installed (site-packages, or the checkout of an
# editable install): the helper imports it from there and nowhere else
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def helper_argv(python: str | None = None) -> list[str]:
    """The Python process of ``get``: isolated (``-I``), without ``site`` (``-S``).

    ``-I`` keeps the working directory (the agent's worktree) and ``PYTHON*``
    variables out of ``sys.path``, so a repo that ships its own
    ``outloop_cli`` package cannot stand in for the helper. ``-S`` skips
    ``site`` (a quarter of an empty interpreter's start, and every ``.pth``
    file's code); the helper needs only the standard library and this package,
    whose directory it appends to ``sys.path`` itself. ``-c`` rather than
    ``-m``: runpy and what it imports would be a sixth of the helper's start.
    """
    code = (
        f"import sys; sys.path.append({_PACKAGE_PARENT!r}); "
        f"from {HELPER_MODULE} import main; sys.exit(main(sys.argv[1:]))"
    )
    return [python or sys.executable, "-I", "-S", "-c", code]


def helper_command(python: str | None = None) -> str:
    """The helper as git runs it: a shell function that starts the helper only for ``get``.

    git runs ``!`` helpers through the shell with the operation appended, and
    asks every helper to ``store`` (and, on a rejected password, to ``erase``)
    as well as to ``get``. The broker keeps nothing git could update, so those
    answer nothing whoever answers them: the shell drains git's request and
    exits, and a push starts one Python process instead of two.

    ``get`` runs this Python on the helper's own module, not the CLI
    (``helper_argv``).
    """
    get = shlex.join([*helper_argv(python), "get"])
    return f'!f() {{ if [ "$1" = get ]; then exec {get}; fi; while read -r _; do :; done; }}; f'


def config_env(entries: Sequence[tuple[str, str]]) -> dict[str, str]:
    env = {"GIT_CONFIG_COUNT": str(len(entries))}
    for index, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def helper_entries(scopes: Sequence[GitScope], python: str | None = None) -> list[tuple[str, str]]:
    entries = [("credential.helper", ""), ("credential.helper", helper_command(python))]
    for scope in scopes:
        if scope.path is not None:
            # git leaves the path out of the request unless told to send it
            for protocol in ("https", "http"):
                entries.append((f"credential.{protocol}://{scope.host}.useHttpPath", "true"))
    return entries


# Config an agent may have planted in the repo that would run its code, or
# send outloop's push elsewhere, when outloop pushes with a capability in its
# environment.
PUSH_HARDENING: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("protocol.ext.allow", "never"),
    ("protocol.fd.allow", "never"),
    ("credential.interactive", "false"),
    ("core.askPass", ""),
)


def remote_scope(remote_url: str, credential: str) -> GitScope | None:
    """The scope of outloop's push to ``remote_url``: its host and its one repo path."""
    parts = urllib.parse.urlsplit(remote_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    return GitScope(credential, host, normalise_path(parts.path))
