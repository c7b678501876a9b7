"""The validated policy file: frozen dataclasses, built by :mod:`~outloop_cli.config.policy_schema`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workspace:
    name: str
    repos: tuple[str, ...]
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    path: str
    workspaces: tuple[Workspace, ...]

    def get(self, name: str) -> Workspace | None:
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        return None
