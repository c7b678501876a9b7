"""The validated policy file: frozen dataclasses, built by :mod:`~outloop_cli.config.policy_schema`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EgressPolicy:
    """Hosts a workspace's sandboxed runs may ever reach beyond the broker (``host:port``)."""

    allow: tuple[str, ...] = ()
    # non-public address ranges those hosts may resolve to (a mirror on the company network)
    reach_private: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workspace:
    name: str
    repos: tuple[str, ...]
    secrets: tuple[str, ...] = ()
    egress: EgressPolicy = field(default_factory=EgressPolicy)


@dataclass(frozen=True)
class Policy:
    path: str
    workspaces: tuple[Workspace, ...]

    def get(self, name: str) -> Workspace | None:
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        return None
