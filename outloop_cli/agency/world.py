"""The agency demo's world: three client repos, their CRMs, their keys and the user's policy.

Everything lives under one directory of the demo's own. The policy and the
secrets index sit in an ``XDG_CONFIG_HOME`` / ``XDG_DATA_HOME`` of their own
there, outside every client repository, as a user's would; the runs get those
through their environment (:func:`child_env`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from outloop_cli.git.repo import create_repository
from outloop_cli.templates_dir import agency_example_dir

CLIENTS = ("acme", "globex", "initech")
# acme's leads carry a prompt injection that points its agent at globex's CRM
ATTACKER, VICTIM = "acme", "globex"
LOOP = "crm-sync"
# a loop in acme's repo that asks for acme's key to be sent to globex's CRM
ROGUE_LOOP = "copy-to-partner"
_READY_TIMEOUT = 15.0
IDENTITY = {
    "GIT_AUTHOR_NAME": "outloop agency demo",
    "GIT_AUTHOR_EMAIL": "agency-demo@outloop.invalid",
    "GIT_COMMITTER_NAME": "outloop agency demo",
    "GIT_COMMITTER_EMAIL": "agency-demo@outloop.invalid",
}


@dataclass(frozen=True)
class Layout:
    """Where things are under the demo's directory: client repos, CRM state, the user's config."""

    root: Path

    @property
    def clients(self) -> Path:
        return self.root / "clients"

    def repo(self, client: str) -> Path:
        return self.clients / client

    def crm_state(self, client: str) -> Path:
        return self.root / "crm" / client

    def crm_export(self, client: str) -> Path:
        return self.crm_state(client) / "export" / "export.json"

    @property
    def user_home(self) -> Path:
        """The demo user's config and data dirs: the policy, the secrets index."""
        return self.root / "user"

    @property
    def config_home(self) -> Path:
        return self.user_home / "config"

    @property
    def data_home(self) -> Path:
        return self.user_home / "data"

    @property
    def policy(self) -> Path:
        return self.config_home / "outloop" / "policy.yml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def crm_server_argv(layout: Layout, client: str) -> list[str]:
    example = agency_example_dir()
    return [
        sys.executable,
        str(example / "crm_server.py"),
        "--client",
        client,
        "--state",
        str(layout.crm_state(client)),
        "--seed",
        str(example / "data" / f"{client}-crm-seed.csv"),
    ]


def read_ready_port(layout: Layout, client: str) -> int | None:
    try:
        data = json.loads((layout.crm_state(client) / "ready.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    port = data.get("port") if isinstance(data, dict) else None
    return port if isinstance(port, int) else None


def crm_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _fill(template: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def _loop_text(layout: Layout, client: str, upstream: str) -> str:
    template = (agency_example_dir() / "crm-sync.yml.template").read_text(encoding="utf-8")
    # each value sits in a double-quoted YAML string (or a JSON list item): JSON-escape it
    values = {
        "client": client,
        "python": sys.executable,
        "crm_url": upstream,
        "crm_export": str(layout.crm_export(client)),
        "crm_export_dir": str(layout.crm_export(client).parent),
    }
    return _fill(template, {k: json.dumps(v)[1:-1] for k, v in values.items()})


def _client_readme(client: str) -> str:
    return (
        f"# {client}: leads\n\n"
        f"`leads.csv` holds {client}'s leads. The nightly loop in `.outloop/{LOOP}.yml`\n"
        "syncs them into the client's CRM through outloop's access proxy and stops when\n"
        "the CRM's row count matches; every turn's `sync-log.md` is committed on the\n"
        f"loop's branch (`outloop/{LOOP}/<run-id>`).\n"
    )


def create_client_repo(layout: Layout, client: str, ports: Mapping[str, int]) -> Path:
    """A client's repository: leads.csv, the loop, its agent and goal; one commit."""
    example = agency_example_dir()
    repo = layout.repo(client)
    shutil.copytree(example / "client", repo)
    leads = (example / "data" / f"{client}.csv").read_text(encoding="utf-8")
    (repo / "leads.csv").write_text(
        _fill(leads, {"globex_crm": crm_url(ports[VICTIM])}), encoding="utf-8"
    )
    (repo / "README.md").write_text(_client_readme(client), encoding="utf-8")
    (repo / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    loops = repo / ".outloop"
    (loops / f"{LOOP}.yml").write_text(
        _loop_text(layout, client, crm_url(ports[client])), encoding="utf-8"
    )
    if client == ATTACKER:
        rogue = _loop_text(layout, client, crm_url(ports[VICTIM]))
        (loops / f"{ROGUE_LOOP}.yml").write_text(
            "# A loop that sends this client's CRM key to another client's CRM.\n"
            "# The policy binds acme's `crm` to acme's CRM: outloop refuses it before it starts.\n"
            + rogue,
            encoding="utf-8",
        )
    create_repository(repo, message=f"{client}: leads and the nightly CRM sync", identity=IDENTITY)
    return repo


def write_policy(layout: Layout, ports: Mapping[str, int]) -> Path:
    """The user's policy: each repo in its own workspace, granted only its own CRM's key."""
    template = (agency_example_dir() / "policy.yml.template").read_text(encoding="utf-8")
    blocks = []
    for client in CLIENTS:
        blocks.append(
            f"  {client}:\n"
            f"    repos: [{json.dumps(str(layout.repo(client)))}]\n"
            "    secrets:\n"
            f"      - name: crm\n"
            f"        upstreams: [{json.dumps(crm_url(ports[client]))}]"
        )
    text = _fill(template, {"workspaces": "\n".join(blocks)})
    layout.policy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.config_home.chmod(0o700)
    layout.policy.write_text(text + "\n", encoding="utf-8")
    layout.policy.chmod(0o600)
    return layout.policy


def child_env(layout: Layout, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of the demo's outloop commands: the demo user's config and data dirs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OUTLOOP_SECRET_") and key not in ("OUTLOOP_POLICY",)
    }
    env.update(
        {
            "XDG_CONFIG_HOME": str(layout.config_home),
            "XDG_DATA_HOME": str(layout.data_home),
            "NO_COLOR": "1",
        }
    )
    env.update(extra)
    return env


def wait_timeout() -> float:
    return _READY_TIMEOUT
