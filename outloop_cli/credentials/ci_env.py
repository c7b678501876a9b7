"""Secrets handed to outloop by CI as ``OUTLOOP_SECRET_<WORKSPACE>_<NAME>`` variables.

Read once, at start-up, then gone from everywhere outloop controls:

* from ``os.environ``, so no child (git, the agent, the goal) inherits them;
* from outloop's own ``/proc/<pid>/environ``. The kernel keeps a process's
  *initial* environment for its whole life, readable by any process of the
  same user (an agent included) — deleting from ``os.environ`` does not touch
  it. So outloop re-executes itself (same pid, same argv) with an environment
  without them, handing the values to the new image over a pipe whose read
  end survives the ``exec``. The new image reads the pipe to EOF, closes it,
  and keeps the values in memory only.

What stays exposed: the variables are still in the environment of whatever
started outloop (the CI runner's step shell, ``env`` in a workflow step), and
``/proc/<that pid>/environ`` is readable by any process of the same user. An
agent running as that user without a sandbox can read it; ``sandbox: bwrap``
closes that (the agent gets its own PID namespace and its own ``/proc``, so
no process outside the sandbox is visible). In GitHub Actions, pass secrets
only to the step that runs outloop, never at job or workflow level.

Names. ``<WORKSPACE>`` and ``<NAME>`` are the workspace and secret names
upper-cased with ``-`` turned into ``_``: ``client-a``/``openai`` reads
``OUTLOOP_SECRET_CLIENT_A_OPENAI``. That mapping is not one-to-one
(``client-a``/``x`` and ``client``/``a-x`` both give ``..._CLIENT_A_X``), so a
variable name is never parsed into parts: outloop computes the variable for
each (workspace, secret) pair the policy names and looks it up. The policy
validator rejects a policy in which two pairs map to the same variable, so a
value can only ever belong to one pair.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from outloop_cli.errors import CouldNotRun

PREFIX = "OUTLOOP_SECRET_"
# Names the inherited fd of the pipe after the re-exec; a number, not a secret.
HANDOFF_FD_ENV = "OUTLOOP_CI_SECRETS_FD"
# Linux raises a pipe's buffer up to /proc/sys/fs/pipe-max-size (1 MiB by default).
_MAX_PAYLOAD = 1 << 20

_values: dict[str, str] | None = None


def env_var_name(workspace: str, name: str) -> str:
    """``client-a``, ``openai`` → ``OUTLOOP_SECRET_CLIENT_A_OPENAI``."""
    return f"{PREFIX}{_part(workspace)}_{_part(name)}"


def _part(text: str) -> str:
    return text.upper().replace("-", "_")


def scrub_ci_secrets_at_startup(*, reexec: bool = True) -> None:
    """Take ``OUTLOOP_SECRET_*`` out of the environment, keeping the values in memory.

    Call it first thing in the process entry point, before anything reads the
    environment or starts a thread. When such variables are present (and
    ``reexec`` is true, on POSIX) this call does not return: the process
    re-executes itself and the new image picks the values up here.

    Raises :class:`CouldNotRun` when the values cannot be handed over.
    """
    global _values
    if _values is not None:
        return
    values: dict[str, str] = {}
    fd_text = os.environ.pop(HANDOFF_FD_ENV, None)
    if fd_text is not None:
        values.update(_read_handoff(fd_text))
    found = {key: value for key, value in os.environ.items() if key.startswith(PREFIX)}
    for key in found:
        del os.environ[key]
    # an empty variable is no secret; it is still removed
    values.update({key: value for key, value in found.items() if value})
    _values = values
    if found and reexec and os.name == "posix":
        _reexec(values)


def ci_secrets_received() -> bool:
    return bool(_values)


def ci_secret(workspace: str, name: str) -> str | None:
    """The value CI gave for (workspace, name), if any."""
    return (_values or {}).get(env_var_name(workspace, name))


def ci_values_by_variable() -> dict[str, str]:
    """Every value received, by variable name: for masking, which must cover them all."""
    return dict(_values or {})


def github_actions_mask_commands() -> list[str]:
    """``::add-mask::`` lines for every CI value and its encodings, in GitHub Actions only.

    GitHub masks a secret's plain value in logs by itself, not its base64, hex
    or URL forms; the entry point prints these before any other output.
    """
    if os.environ.get("GITHUB_ACTIONS") != "true" or not _values:
        return []
    from outloop_cli.credentials.masking import Masker, add_mask_commands

    return add_mask_commands(Masker(_values))


def ci_variable_names() -> tuple[str, ...]:
    """The names of the variables received (never their values), sorted."""
    return tuple(sorted(_values or {}))


def _reexec(values: Mapping[str, str]) -> None:
    payload = json.dumps(dict(values)).encode()
    read_fd, write_fd = os.pipe()
    try:
        _fit_pipe(write_fd, len(payload))
        # nothing reads yet, so the whole payload must fit in the pipe's buffer
        os.set_blocking(write_fd, False)
        written = 0
        while written < len(payload):
            written += os.write(write_fd, payload[written:])
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise CouldNotRun(
            f"cannot hand over the OUTLOOP_SECRET_* variables ({len(payload)} bytes): "
            f"{exc.strerror or exc}",
            hint="pass fewer or smaller secrets to one outloop process",
        ) from None
    os.close(write_fd)
    os.set_inheritable(read_fd, True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX)}
    env[HANDOFF_FD_ENV] = str(read_fd)
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:
        os.close(read_fd)
        raise CouldNotRun(
            f"cannot re-execute outloop to drop the OUTLOOP_SECRET_* variables: {exc.strerror}",
        ) from None


def _fit_pipe(fd: int, size: int) -> None:
    if size > _MAX_PAYLOAD:
        raise OSError(0, f"more than {_MAX_PAYLOAD} bytes")
    import fcntl

    # Linux only; elsewhere the default buffer (at least 16 KiB) has to do
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None and size >= 60 * 1024:
        fcntl.fcntl(fd, set_size, max(size, 64 * 1024))


def _read_handoff(fd_text: str) -> dict[str, str]:
    try:
        fd = int(fd_text)
    except ValueError:
        raise CouldNotRun(f"{HANDOFF_FD_ENV} is not a file descriptor number") from None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise CouldNotRun(
            f"cannot read the CI secrets handed over on fd {fd}: {exc.strerror}",
            hint=f"{HANDOFF_FD_ENV} is set by outloop for itself; do not set it",
        ) from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        data = json.loads(b"".join(chunks))
    except ValueError:
        raise CouldNotRun(f"the CI secrets handed over on fd {fd} are garbled") from None
    if not isinstance(data, dict):
        raise CouldNotRun(f"the CI secrets handed over on fd {fd} are garbled")
    return {
        str(k): str(v) for k, v in data.items() if str(k).startswith(PREFIX) and isinstance(v, str)
    }
