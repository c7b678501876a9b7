"""``outloop secrets set|list|rm``: keys in the keyring, per workspace.

Plain functions returning values; the CLI reads the value (prompt or stdin)
and prints. A value never comes from argv and never goes back out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outloop_cli.config.policy_model import Policy
from outloop_cli.credentials import ci_env
from outloop_cli.credentials.policy import default_policy_path, load_policy
from outloop_cli.credentials.store import SecretRef, SecretStore, make_ref
from outloop_cli.errors import OutloopError, UsageError


@dataclass(frozen=True)
class StoredSecret:
    """A secret ``outloop secrets set`` stored: where, and whether the policy lets runs have it."""

    ref: SecretRef
    backend: str
    # why this secret will not be granted as things stand, if the policy says so
    policy_note: str | None = None


@dataclass(frozen=True)
class SecretListing:
    """One row of ``outloop secrets list``: a secret in the keyring, or a CI variable."""

    # None for a CI variable no policy pair maps to
    workspace: str | None
    name: str
    # "keyring" or "ci"
    source: str
    # whether the keyring holds a value now; None when not checked
    present: bool | None = None
    updated: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "workspace": self.workspace,
            "name": self.name,
            "source": self.source,
            "present": self.present,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class SecretList:
    """What ``outloop secrets list`` shows: its rows, and why the keyring could not be used."""

    entries: list[SecretListing]
    # set when the keyring could not be used: names come from the index, unchecked
    keyring_problem: str | None = None


def set_secret(
    workspace: str, name: str, value: str, *, allow_insecure: bool | None = None
) -> StoredSecret:
    ref = make_ref(workspace, name)
    if not value:
        raise UsageError(
            f"refusing to store an empty value for {ref}",
            hint="pipe the value on stdin, or type it at the prompt",
        )
    store = SecretStore.open(allow_insecure=allow_insecure)
    store.set(ref, value)
    return StoredSecret(ref, store.backend_name, _policy_note(ref))


def remove_secret(workspace: str, name: str, *, allow_insecure: bool | None = None) -> SecretRef:
    ref = make_ref(workspace, name)
    store = SecretStore.open(allow_insecure=allow_insecure)
    if not store.delete(ref):
        raise UsageError(
            f"no secret {ref} in the keyring", hint="`outloop secrets list` shows them"
        )
    return ref


def list_secrets(
    *, workspace: str | None = None, allow_insecure: bool | None = None, check: bool = True
) -> SecretList:
    problem: str | None = None
    entries: list[SecretListing] = []
    try:
        store = SecretStore.open(allow_insecure=allow_insecure)
        indexed = store.entries(check=check)
    except OutloopError as exc:
        problem = exc.message
        indexed = SecretStore(backend=None).entries(check=False)
    for entry in indexed:
        entries.append(
            SecretListing(entry.workspace, entry.name, "keyring", entry.present, entry.updated)
        )
    entries.extend(_ci_listings())
    if workspace is not None:
        entries = [e for e in entries if e.workspace == workspace]
    entries.sort(key=lambda e: (e.workspace or "", e.name, e.source))
    return SecretList(entries, problem)


def _ci_listings() -> list[SecretListing]:
    received = set(ci_env.ci_variable_names())
    if not received:
        return []
    out: list[SecretListing] = []
    policy = _try_policy()
    if policy is not None:
        for ws in policy.workspaces:
            for secret in ws.secret_names:
                variable = ci_env.env_var_name(ws.name, secret)
                if variable in received:
                    received.discard(variable)
                    out.append(SecretListing(ws.name, secret, "ci", True))
    # variables no policy pair reads: shown by variable name so the user can spot a typo
    out.extend(SecretListing(None, variable, "ci", True) for variable in sorted(received))
    return out


def _try_policy(path: Path | None = None) -> Policy | None:
    path = path or default_policy_path()
    if not path.exists():
        return None
    try:
        return load_policy(path)
    except OutloopError:
        return None


def _policy_note(ref: SecretRef) -> str | None:
    path = default_policy_path()
    if not path.exists():
        return f"no policy file at {path} yet: no run gets this secret until a workspace lists it"
    try:
        policy = load_policy(path)
    except OutloopError:
        return f"the policy file {path} has problems (`outloop` will report them at run time)"
    workspace = policy.get(ref.workspace)
    if workspace is None:
        return f"the policy {path} has no workspace `{ref.workspace}`: no run gets this secret yet"
    if ref.name not in workspace.secret_names:
        return (
            f"workspace `{ref.workspace}` in {path} does not list `{ref.name}` under "
            "`secrets:`: no run gets it until it does"
        )
    return None
