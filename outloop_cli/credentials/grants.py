"""Which secrets a run gets: the loop asks, the policy decides, the store provides.

For each credential the loop file asks for, in order:

1. the repo must belong to exactly one workspace of the policy;
2. that workspace must list the secret's name;
3. a value must exist: a CI variable (``OUTLOOP_SECRET_<WORKSPACE>_<NAME>``,
   read at start-up) or else the keyring entry ``<workspace>/<name>``.

Each answer is a :class:`Decision` (granted or denied, with the reason) for
the audit log; values stay in :attr:`SecretGrants.values`, in memory, and
never in a decision, a ``repr`` or an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outloop_cli.config.model import CredentialConfig
from outloop_cli.config.policy_model import Policy
from outloop_cli.credentials import ci_env
from outloop_cli.credentials.bindings import Binding
from outloop_cli.credentials.masking import Masker
from outloop_cli.credentials.policy import WorkspaceMatch, match_workspace
from outloop_cli.credentials.store import SecretRef, SecretStore

SOURCE_CI = "ci"
SOURCE_KEYRING = "keyring"


@dataclass(frozen=True)
class Decision:
    """One grant or refusal, fit for the audit log: no value, ever."""

    granted: bool
    name: str
    workspace: str | None
    reason: str
    # where the value came from when granted: "ci" or "keyring"
    source: str | None = None
    via: str | None = None
    # refused because the loop would send the secret outside the policy's binding
    # (always fatal, even for a preset's default credential); where the policy says so
    outside_binding: bool = False
    policy_at: str | None = None

    @property
    def event(self) -> str:
        return "credential_granted" if self.granted else "credential_denied"

    def audit_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``audit.append(decision.event, **fields)``."""
        fields: dict[str, Any] = {
            "name": self.name,
            "workspace": self.workspace,
            "reason": self.reason,
        }
        if self.source is not None:
            fields["source"] = self.source
        if self.via is not None:
            fields["via"] = self.via
        if self.outside_binding:
            fields["outside_binding"] = True
        if self.policy_at is not None:
            fields["policy_at"] = self.policy_at
        return fields


@dataclass
class SecretGrants:
    """The outcome for one run. ``values`` (name → value) lives in memory only."""

    workspace: str | None
    match: WorkspaceMatch | None
    decisions: list[Decision] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict, repr=False)
    # where each granted secret may go, for the proxy's and the broker's own checks
    bindings: dict[str, Binding] = field(default_factory=dict)

    @property
    def denied(self) -> list[Decision]:
        return [d for d in self.decisions if not d.granted]

    @property
    def granted(self) -> list[Decision]:
        return [d for d in self.decisions if d.granted]

    def masker(self, *, include_ci: bool = True) -> Masker:
        """Masks the granted values and, by default, every CI-provided value too.

        CI values that were not granted cannot reach the agent through outloop,
        but may still be read from the parent shell's environment without a
        sandbox; masking them costs nothing.
        """
        values = dict(self.values)
        if include_ci:
            for variable, value in ci_env.ci_values_by_variable().items():
                values.setdefault(variable, value)
        return Masker(values)

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.values))
        return f"SecretGrants(workspace={self.workspace!r}, granted=[{names}], values=<hidden>)"


# (workspace, name) → value or None; raises CouldNotRun when the keyring is unusable
Lookup = Callable[[str, str], str | None]


def resolve_run_secrets(
    requested: Sequence[CredentialConfig],
    repo_root: Path,
    remote_urls: Sequence[str],
    policy_path: Path | None = None,
    *,
    policy: Policy | None = None,
    keyring_lookup: Lookup | None = None,
    allow_insecure_keyring: bool | None = None,
) -> SecretGrants:
    """Decide each requested credential for a run of the repo at ``repo_root``.

    ``remote_urls``: every remote URL of the user's checkout. ``policy`` (or
    the file at ``policy_path``, default the user's policy) decides;
    ``keyring_lookup`` replaces the keyring (the CI variables are always
    read first). Raises :class:`ConfigError` for an invalid policy file; a
    missing or unusable secret is a denial, not an exception.
    """
    wanted: dict[str, CredentialConfig] = {}
    for cred in requested:
        wanted.setdefault(cred.name, cred)
    if not wanted:
        return SecretGrants(workspace=None, match=None)
    match = match_workspace(repo_root, remote_urls, policy, policy_path=policy_path)
    grants = SecretGrants(workspace=match.workspace.name if match.workspace else None, match=match)
    if match.workspace is None:
        for name, cred in wanted.items():
            grants.decisions.append(Decision(False, name, None, match.reason, via=cred.via))
        return grants
    workspace = match.workspace
    store_state: dict[str, Any] = {}

    def from_keyring(ws: str, name: str) -> str | None:
        if keyring_lookup is not None:
            return keyring_lookup(ws, name)
        if "store" not in store_state:
            store_state["store"] = SecretStore.open(allow_insecure=allow_insecure_keyring)
        store: SecretStore = store_state["store"]
        return store.get(SecretRef(ws, name))

    for name, cred in wanted.items():
        if name not in workspace.secret_names:
            allowed = ", ".join(workspace.secret_names) or "none"
            grants.decisions.append(
                Decision(
                    False,
                    name,
                    workspace.name,
                    f"the policy does not allow `{name}` for workspace `{workspace.name}` "
                    f"(allowed: {allowed})",
                    via=cred.via,
                )
            )
            continue
        entry = workspace.secret(name)
        assert entry is not None
        binding = Binding.of(entry, match.policy_path or "the policy")
        outside = binding.refusal(cred)
        if outside is not None:
            grants.decisions.append(
                Decision(
                    False,
                    name,
                    workspace.name,
                    outside,
                    via=cred.via,
                    outside_binding=True,
                    policy_at=binding.origin,
                )
            )
            continue
        grants.bindings[name] = binding
        decision, value = _lookup(workspace.name, name, cred.via, from_keyring)
        grants.decisions.append(decision)
        if value is not None:
            grants.values[name] = value
    return grants


def _lookup(
    workspace: str, name: str, via: str, from_keyring: Lookup
) -> tuple[Decision, str | None]:
    from outloop_cli.errors import OutloopError

    value = ci_env.ci_secret(workspace, name)
    if value:
        variable = ci_env.env_var_name(workspace, name)
        return Decision(True, name, workspace, f"from {variable}", SOURCE_CI, via), value
    try:
        value = from_keyring(workspace, name)
    except OutloopError as exc:
        return Decision(False, name, workspace, exc.message, via=via), None
    if value:
        return Decision(
            True, name, workspace, f"from the keyring ({workspace}/{name})", SOURCE_KEYRING, via
        ), value
    return (
        Decision(
            False,
            name,
            workspace,
            f"no secret {workspace}/{name}: store it with "
            f"`outloop secrets set {name} --workspace {workspace}` "
            f"(or pass {ci_env.env_var_name(workspace, name)} in CI)",
            via=via,
        ),
        None,
    )


def decisions_summary(grants: SecretGrants) -> list[Mapping[str, Any]]:
    """The decisions as plain data for ``run.json`` or ``--json`` output (never values)."""
    return [{"event": d.event, **d.audit_fields()} for d in grants.decisions]


def binding_for(
    name: str, repo_root: Path, remote_urls: Sequence[str], policy_path: Path | None = None
) -> tuple[Binding, str | None] | None:
    """Where the policy lets this repo's secret ``name`` go, without reading its value.

    ``(binding, workspace)``; None when the repo has no workspace or the workspace
    does not list the secret (asking for its value is then refused with the reason).
    """
    match = match_workspace(repo_root, remote_urls, policy_path=policy_path)
    entry = match.workspace.secret(name) if match.workspace is not None else None
    if entry is None or match.workspace is None:
        return None
    return Binding.of(entry, match.policy_path or "the policy"), match.workspace.name
