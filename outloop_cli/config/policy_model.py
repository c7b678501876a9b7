"""The validated policy file: frozen dataclasses, built by :mod:`~outloop_cli.config.policy_schema`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SecretEntry:
    """One secret a workspace may use, and where its value may be sent.

    ``upstreams`` (``scheme://host[:port][/path-prefix]``) bind a ``via: proxy``
    use and a forge token's API; ``hosts`` bind a ``via: git`` use and
    outloop's push. ``None`` means "not written": the secret's well-known
    destinations apply (:mod:`outloop_cli.credentials.bindings`), and a secret
    that has none may go nowhere until the policy says where. ``helper`` allows
    ``via: helper``, which hands the raw value to the agent.
    """

    name: str
    upstreams: tuple[str, ...] | None = None
    hosts: tuple[str, ...] | None = None
    helper: bool = False
    # where the entry is in the policy file, for messages (1-based); not part of its value
    line: int | None = field(default=None, compare=False)
    col: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class EgressPolicy:
    """Hosts a workspace's sandboxed runs may ever reach beyond the broker (``host:port``)."""

    allow: tuple[str, ...] = ()
    # non-public address ranges those hosts may resolve to (a mirror on the company network)
    reach_private: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workspace:
    """One workspace of the policy: the repos it covers, the secrets they may use, its egress."""

    name: str
    repos: tuple[str, ...]
    secrets: tuple[SecretEntry, ...] = ()
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.secrets)

    def secret(self, name: str) -> SecretEntry | None:
        return next((entry for entry in self.secrets if entry.name == name), None)


@dataclass(frozen=True)
class Policy:
    """The policy file (``~/.config/outloop/policy.yml``): its workspaces by name."""

    path: str
    workspaces: tuple[Workspace, ...]

    def get(self, name: str) -> Workspace | None:
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        return None
