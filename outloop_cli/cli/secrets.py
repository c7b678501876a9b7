"""CLI commands: ``secrets set|list|rm`` — keys in the keyring, per workspace.

A value is read from a hidden prompt when stdin is a terminal, from stdin
otherwise (one trailing newline dropped, so ``echo "$KEY" | outloop secrets
set …`` stores ``$KEY``). Never from an argument: argv is world-readable in
``/proc`` and lands in shell history.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from outloop_cli.cli.registry import CommandSet
from outloop_cli.cli.terminal import err, out, out_json

_commands = CommandSet()
register = _commands.register

secrets_group = _commands.group(
    "secrets", help="Manage keys in the keyring, per workspace (values are never printed)."
)

_WORKSPACE = typer.Option(
    "--workspace", "-w", help="The workspace the key belongs to (as named in your policy)."
)
_INSECURE = typer.Option(
    "--allow-insecure-keyring",
    help="Accept a keyring backend that keeps keys in plaintext "
    "(same as OUTLOOP_ALLOW_INSECURE_KEYRING=1).",
)


def _insecure(flag: bool) -> bool | None:
    # None lets the environment variable decide
    return True if flag else None


def _read_value(label: str) -> str:
    from outloop_cli.errors import UsageError

    if sys.stdin is None:
        raise UsageError("no value: stdin is closed", hint="pipe the value on stdin")
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"Value for {label} (input hidden): ")
    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the value on stdin is not UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


# extra arguments are collected, not rejected by the parser, whose message would echo them
@secrets_group.command("set", context_settings={"allow_extra_args": True})
def set_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The secret's name, e.g. openai.")],
    workspace: Annotated[str, _WORKSPACE],
    allow_insecure_keyring: Annotated[bool, _INSECURE] = False,
) -> int:
    """Store a key: from a hidden prompt, or from stdin (never from an argument)."""
    from outloop_cli.commands.secrets import set_secret
    from outloop_cli.credentials.store import make_ref
    from outloop_cli.errors import UsageError

    if ctx.args:
        raise UsageError(
            "a secret's value is never taken from the command line "
            "(it would be visible in the process list and your shell history); nothing stored",
            hint=f"type it at the prompt, or pipe it: `... | outloop secrets set {name} "
            f"--workspace {workspace}`; consider the value exposed and rotate it",
        )
    ref = make_ref(workspace, name)
    value = _read_value(str(ref))
    stored = set_secret(workspace, name, value, allow_insecure=_insecure(allow_insecure_keyring))
    err(f"stored {stored.ref} in the keyring ({stored.backend})")
    if stored.policy_note:
        err(f"note: {stored.policy_note}")
    return 0


@secrets_group.command("list")
def list_command(
    workspace: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--workspace", "-w", help="Only this workspace."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per secret.")] = False,
    allow_insecure_keyring: Annotated[bool, _INSECURE] = False,
) -> int:
    """List stored keys by workspace and name (never their values)."""
    from outloop_cli.commands.secrets import list_secrets

    listing = list_secrets(workspace=workspace, allow_insecure=_insecure(allow_insecure_keyring))
    if listing.keyring_problem:
        err(f"warning: {listing.keyring_problem}; names below are not checked against it")
    for entry in listing.entries:
        if as_json:
            out_json(entry.as_json())
            continue
        label = f"{entry.workspace}/{entry.name}" if entry.workspace else entry.name
        if entry.source == "ci":
            status = "from CI variable" if entry.workspace else "CI variable, not in the policy"
        elif entry.present is False:
            status = "missing from the keyring"
        else:
            status = "keyring"
        out(f"{label}\t{status}")
    if not listing.entries:
        err("no secrets stored yet (`outloop secrets set NAME --workspace W`)")
    return 0


@secrets_group.command("rm")
def rm_command(
    name: Annotated[str, typer.Argument(help="The secret's name.")],
    workspace: Annotated[str, _WORKSPACE],
    allow_insecure_keyring: Annotated[bool, _INSECURE] = False,
) -> int:
    """Remove a key from the keyring."""
    from outloop_cli.commands.secrets import remove_secret

    ref = remove_secret(workspace, name, allow_insecure=_insecure(allow_insecure_keyring))
    err(f"removed {ref}")
    return 0
