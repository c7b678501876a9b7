"""What a run may reach beyond the broker: decided before it starts, served while it runs.

The loop file asks (``egress:``), the workspace of the user's policy allows
(``egress.allow``); the run gets only what lies inside both, and a rule the
policy does not allow stops the run before anything happens (exit 3), as a
secret the policy refuses does. While the run lives, the egress proxy serves
the sandbox on a Unix socket and every connection becomes an ``egress``
audit event. Outside the sandbox the rules cannot hold, which the run says.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from outloop_cli.errors import CouldNotRun
from outloop_cli.sandbox.egress_rules import EgressRules, narrow, parse_network, parse_rule
from outloop_cli.sandbox.ports import SANDBOX_EGRESS_PORT, SandboxServer, runtime_parent

if TYPE_CHECKING:
    from outloop_cli.config.model import LoopConfig
    from outloop_cli.git.repo import Repository
    from outloop_cli.sandbox.egress import EgressService

_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")


@dataclass(frozen=True)
class EgressPlan:
    """The egress rules a run's sandbox enforces, the workspace they were narrowed for, and notes on why."""

    rules: EgressRules = field(default_factory=EgressRules)
    workspace: str | None = None
    notes: tuple[str, ...] = ()


def plan_egress(
    config: LoopConfig, repo: Repository, policy_path: Path | None, *, contained: bool
) -> EgressPlan:
    """The loop's egress rules narrowed by its workspace's; CouldNotRun when any is not allowed."""
    if not config.egress:
        return EgressPlan()
    if not contained:
        return EgressPlan(
            notes=(
                f"`egress` ({', '.join(config.egress)}) is enforced only in the sandbox; "
                f"without one (`sandbox: {config.sandbox.mode}`) the agent reaches every host",
            )
        )
    from outloop_cli.credentials.policy import match_workspace

    asked = tuple(parse_rule(rule) for rule in config.egress)
    match = match_workspace(repo.info.root, repo.remote_urls(), policy_path=policy_path)
    where = f"{config.path}: egress"
    if match.workspace is None:
        raise CouldNotRun(
            f"{where} asks to reach {', '.join(config.egress)}, but {match.reason}",
            hint="a workspace of your policy file allows hosts (`egress: {allow: [...]}`)",
        )
    workspace = match.workspace
    allowed = EgressRules(
        tuple(parse_rule(rule) for rule in workspace.egress.allow),
        tuple(parse_network(net) for net in workspace.egress.reach_private),
    )
    kept, refused = narrow(allowed, asked)
    if refused:
        raise CouldNotRun(
            f"{where} asks to reach {', '.join(refused)}, which workspace `{workspace.name}` "
            f"in {match.policy_path} does not allow",
            hint=f"add them to `workspaces.{workspace.name}.egress.allow` in your policy file "
            "if this repository may reach them",
        )
    return EgressPlan(kept, workspace.name)


class RunEgress:
    """The egress proxy of one run, from its start to its end (nothing when it has no rules)."""

    def __init__(self) -> None:
        self._service: EgressService | None = None
        self._dir: Path | None = None

    def start(self, plan: EgressPlan, audit: Callable[..., None]) -> None:
        """Serve ``plan``'s rules; ``audit(event, **fields)`` is called from the proxy's thread."""
        if not plan.rules:
            return
        from outloop_cli.sandbox.egress import EgressService

        self._dir = Path(tempfile.mkdtemp(prefix="outloop-egress-", dir=runtime_parent()))
        self._dir.chmod(0o700)

        def on_event(event: dict[str, object]) -> None:
            fields = {k: v for k, v in event.items() if k != "event"}
            audit("egress", **fields)

        service = EgressService.start(plan.rules, self._dir, on_event)
        self._service = service
        audit(
            "egress_allowed",
            workspace=plan.workspace,
            rules=[str(rule) for rule in plan.rules.rules],
        )

    def relay(self) -> SandboxServer | None:
        """The egress proxy as sandboxes reach it, when the run may reach hosts."""
        if self._service is None:
            return None
        service = self._service
        return SandboxServer(SANDBOX_EGRESS_PORT, service.socket_path, service.open_handoff)

    def close(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            service.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def proxy_env(relay: SandboxServer | None, local: Sequence[str] = ()) -> Mapping[str, str]:
    """The variables that send HTTP clients inside the sandbox through the egress proxy."""
    if relay is None:
        return {}
    url = f"http://127.0.0.1:{relay.port}"
    env = dict.fromkeys(_PROXY_VARIABLES, url)
    # the access proxy and anything else on the sandbox's own loopback stay direct
    no_proxy = ",".join(["127.0.0.1", "localhost", "::1", *local])
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env
