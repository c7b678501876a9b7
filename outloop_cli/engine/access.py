"""What one run may reach: the secrets the policy granted, the broker that hands out
access to them, and the masker that keeps their values out of every output.

The engine plans access before anything is written (a refused secret the loop
asked for is exit 3 with nothing done), starts the broker with the run and
closes it when the run ends, which revokes every capability. A forge token
(for the CI goal, a pull request or ``outloop pr``) is resolved here too, and
only here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from outloop_cli.config.model import CredentialConfig, LoopConfig
from outloop_cli.errors import CouldNotRun
from outloop_cli.git.repo import Repository

if TYPE_CHECKING:
    from outloop_cli.credentials.grants import Decision
    from outloop_cli.sandbox.ports import SandboxServer

EventSink = Callable[[str, dict[str, Any]], None]
DecisionSink = Callable[["Decision"], None]


@dataclass(frozen=True)
class TokenRefusal:
    """How a refused forge token is reported: ``{provider}`` and ``{reason}`` are filled in."""

    message: str
    hint: str


# a run needs the token for its CI goal or its pull request
REFUSED_FOR_RUN = TokenRefusal(
    "the CI goal needs the `{provider}` secret: {reason}",
    "store a token or GitHub App as `{provider}` for this repo's workspace",
)
# `outloop pr` opens the pull request of a finished run
REFUSED_FOR_PR_COMMAND = TokenRefusal(
    "no `{provider}` secret for this repository: {reason}",
    "store a token or GitHub App with `outloop secrets set {provider}`",
)


def resolve_forge_token(
    provider: str,
    repo_root: Path,
    remote_url: str,
    policy_path: Path | None = None,
    *,
    refusal: TokenRefusal,
    api_url: str,
    on_decision: DecisionSink | None = None,
) -> str:
    """The ``github``/``gitlab`` secret of the repo's workspace, as the policy allows.

    The token goes to ``api_url``, which must lie inside the secret's binding.
    Each decision goes to ``on_decision`` (a run audits it) before a refusal
    raises :class:`CouldNotRun` worded by ``refusal``.
    """
    from outloop_cli.credentials.grants import resolve_run_secrets

    grants = resolve_run_secrets(
        [CredentialConfig(name=provider, via="git")], repo_root, [remote_url], policy_path
    )
    if on_decision is not None:
        for decision in grants.decisions:
            on_decision(decision)
    binding = grants.bindings.get(provider)
    why = binding.url_refusal(api_url, "the forge API") if binding is not None else None
    if binding is not None and why is not None:
        if on_decision is not None:
            on_decision(_outside(grants.decisions[-1], why, binding.origin))
        raise CouldNotRun(
            refusal.message.format(provider=provider, reason=why),
            hint=f"add the API to the secret's `upstreams:` in the policy ({binding.origin}) "
            "if the token may go there",
        )
    secret = grants.values.get(provider)
    if secret is None:
        # one credential asked for is always one decision; the fallback is for safety only
        reason = grants.decisions[0].reason if grants.decisions else "not granted"
        raise CouldNotRun(
            refusal.message.format(provider=provider, reason=reason),
            hint=refusal.hint.format(provider=provider),
        )
    return str(secret)


def _outside(decision: Decision, reason: str, policy_at: str) -> Decision:
    import dataclasses

    return dataclasses.replace(
        decision,
        granted=False,
        reason=reason,
        source=None,
        outside_binding=True,
        policy_at=policy_at,
    )


def forge_api_url(config: LoopConfig, remote_url: str | None) -> tuple[str, str] | None:
    """(provider, the REST API's base URL) a run's forge token goes to, when it uses one."""
    ci = config.goal.ci
    # a loop started by a failed CI run reads that run's failed checks with the token too
    if ci is None and not config.pr and config.triggers.ci_failed is None:
        return None
    import os

    from outloop_cli.errors import OutloopError
    from outloop_cli.forges.remote import api_url_for, resolve_repo

    provider = ci.provider if ci is not None else "github"
    try:
        remote = resolve_repo(ci.repo if ci is not None else None, remote_url, provider=provider)
    except OutloopError:
        return None  # the forge step says what is wrong with the remote
    return provider, api_url_for(provider, remote.host, ci.api_url if ci else None, os.environ)


def _check_forge_binding(
    repo: Repository,
    config: LoopConfig,
    base_commit: str,
    forge: tuple[str, str],
    policy_path: Path | None,
) -> None:
    from outloop_cli.credentials.grants import Decision, binding_for

    provider, api_url = forge
    found = binding_for(provider, repo.info.root, repo.remote_urls(), policy_path)
    if found is None:
        return  # no such secret for this repo: the forge step says so when it asks
    binding, workspace = found
    why = binding.url_refusal(api_url, "the forge API")
    if why is None:
        return
    decision = Decision(
        False,
        provider,
        workspace,
        why,
        via="git",
        outside_binding=True,
        policy_at=binding.origin,
    )
    api = CredentialConfig(name=provider, via="proxy", upstream=api_url)
    raise _refuse_outside_binding(repo, config, base_commit, decision, [api])


REFUSALS_LOG = "refused.jsonl"


def refusals_log(repo: Repository) -> Path:
    """Runs refused before they started leave their audit events here (no run directory)."""
    return repo.info.common_dir / "outloop" / REFUSALS_LOG


def _refuse_outside_binding(
    repo: Repository,
    config: LoopConfig,
    base_commit: str,
    decision: Decision,
    requested: Sequence[CredentialConfig],
) -> CouldNotRun:
    """Exit 3 naming the loop file's line, the key and the policy's line; audited first."""
    from outloop_cli.config.locate import locate
    from outloop_cli.credentials.bindings import Binding
    from outloop_cli.store.audit import AuditLog

    cred = next(c for c in requested if c.name == decision.name)
    key = "host" if cred.via == "git" else "via" if cred.via == "helper" else "upstream"
    name = decision.name
    raw = repo.read_file(base_commit, config.path) or b""
    found = locate(
        raw.decode("utf-8", "replace"),
        [
            ("credentials", name, key),
            ("credentials", name),
            ("goal", "ci", "api_url"),
            ("goal", "ci"),
            ("pr",),
            ("agent", "preset"),
        ],
    )
    shown = f"{config.path}@{base_commit[:10]}"
    if found is None:
        where, key_path = shown, f"credentials.{name}.{key}"
    else:
        key_path, line, col = found
        where = f"{shown}:{line}:{col}"
        if key_path == "agent.preset":
            key_path = f"agent.preset (its `{name}` credential's {key})"
    AuditLog(refusals_log(repo), f"refused-{config.name}").append(
        decision.event,
        **decision.audit_fields(),
        loop=config.name,
        commit=base_commit,
        loop_at=where,
        key=key_path,
    )
    binding = Binding(name, (), (), False, decision.policy_at or "the policy")
    return CouldNotRun(
        f"{where}: {key_path}: the loop would send secret `{name}` where the policy does "
        f"not allow it: {decision.reason}",
        hint=binding.hint(cred) + "; nothing was run",
    )


def push_credential(config: LoopConfig, remote_url: str | None) -> CredentialConfig | None:
    """The credential outloop's own push of the scratch branch uses, if it pushes over http(s).

    The loop's own `via: git` credential for the remote's host when it has one (the
    agent gets git access then too, because the loop asked), else `github` for
    github.com or `gitlab` for gitlab.com, for outloop's push only (SPEC §1: the agent holds no push
    credential by default).
    """
    if not (config.push or config.pr or config.goal.ci is not None) or not remote_url:
        return None
    parts = urlsplit(remote_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.netloc.rpartition("@")[2].lower()
    for cred in config.credentials:
        if cred.via == "git" and cred.host and cred.host.lower() in (host, parts.hostname):
            return cred
    # only the public forges by exact name: a token must not go to a host that merely
    # looks like one; Enterprise and self-hosted remotes name their `via: git` credential
    default = {"github.com": "github", "gitlab.com": "gitlab"}.get(parts.hostname.lower())
    return CredentialConfig(name=default, via="git", host=host) if default else None


def requested_credentials(config: LoopConfig) -> tuple[list[CredentialConfig], set[str]]:
    """The loop's own credential requests plus its preset's default (SPEC §2).

    Returns the requests and the names the loop asked for *explicitly*: only
    those make a refusal fatal; a preset default the policy does not grant
    leaves the agent to its own login.
    """
    from outloop_cli.agents.registry import default_credentials

    explicit = {c.name for c in config.credentials}
    merged = list(config.credentials)
    presets = [config.agent.preset]
    if config.goal.judge is not None:
        # the judge's model API goes through the same proxy and policy as the agent's
        presets.append(config.goal.judge.preset)
    for preset in presets:
        for default in default_credentials(preset):
            if default.name not in {c.name for c in merged}:
                merged.append(default)
    return merged, explicit


@dataclass
class RunAccess:
    """Granted secrets (in memory only) and, once started, the run's broker."""

    config: LoopConfig
    grants: Any  # credentials.grants.SecretGrants; imported lazily (keyring is slow to import)
    credentials: list[CredentialConfig]
    ca_bundles: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # outloop's own push credential (never the agent's unless the loop asked for it)
    push: CredentialConfig | None = None
    _broker: Any = None
    _scan_masker: Any = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @classmethod
    def plan(
        cls, repo: Repository, config: LoopConfig, base_commit: str, policy_path: Path | None
    ) -> RunAccess:
        requested, explicit = requested_credentials(config)
        push = push_credential(config, repo.remote_url("origin"))
        if push is not None and push.name not in {c.name for c in requested}:
            requested.append(push)
        forge = forge_api_url(config, repo.remote_url("origin"))
        if forge is not None and forge[0] not in {c.name for c in requested}:
            # the forge token is asked for later (the CI goal, the pull request); where it
            # would go is decided now, before anything runs
            _check_forge_binding(repo, config, base_commit, forge, policy_path)
        if not requested:
            return cls(config, None, [])
        from outloop_cli.credentials.grants import resolve_run_secrets

        grants = resolve_run_secrets(requested, repo.info.root, repo.remote_urls(), policy_path)
        outside = [d for d in grants.denied if d.outside_binding]
        if outside:
            raise _refuse_outside_binding(repo, config, base_commit, outside[0], requested)
        if push is not None and push.host and push.name in grants.bindings:
            why = grants.bindings[push.name].host_refusal(push.host, "outloop's push to")
            if why is not None:
                raise CouldNotRun(
                    f"{config.path}: the `{push.name}` secret would go to the `origin` "
                    f"remote's host, which was refused: {why}",
                    hint=grants.bindings[push.name].hint(push),
                )
        forge = forge_api_url(config, repo.remote_url("origin"))
        if forge is not None and forge[0] in grants.bindings:
            provider, api_url = forge
            binding = grants.bindings[provider]
            why = binding.url_refusal(api_url, "the forge API")
            if why is not None:
                index = next(i for i, d in enumerate(grants.decisions) if d.name == provider)
                grants.decisions[index] = _outside(grants.decisions[index], why, binding.origin)
                api = CredentialConfig(name=provider, via="proxy", upstream=api_url)
                raise _refuse_outside_binding(
                    repo, config, base_commit, grants.decisions[index], [api]
                )
        refused = [d for d in grants.denied if d.name in explicit]
        if refused:
            first = refused[0]
            raise CouldNotRun(
                f"the loop asks for secret `{first.name}`, which was refused: {first.reason}",
                hint="the policy outside the repo decides (`$XDG_CONFIG_HOME/outloop/policy.yml`); "
                "add the repo and the secret to a workspace, then `outloop secrets set "
                f"{first.name} --workspace W`",
            )
        notes = [
            f"no `{d.name}` key for outloop's push: {d.reason}; the push may be refused"
            if push is not None and d.name == push.name
            else f"no `{d.name}` key for the {config.agent.preset} agent: {d.reason}; "
            "it must log in by itself"
            for d in grants.denied
        ]
        bundles: dict[str, bytes] = {}
        for cred in requested:
            if cred.ca_bundle:
                data = repo.read_file(base_commit, cred.ca_bundle)
                if data is None:
                    raise CouldNotRun(
                        f"credentials.{cred.name}.ca_bundle `{cred.ca_bundle}` is not in commit "
                        f"{base_commit[:10]}",
                        hint="commit the CA bundle: it is read from the starting commit",
                    )
                bundles[cred.ca_bundle] = data
        granted = [c for c in requested if c.name in grants.values]
        if push is not None and push.name not in grants.values:
            push = None
        # a push-only credential is the broker's to use, not the agent's
        agent_side = [
            c for c in granted if push is None or c is not push or c in config.credentials
        ]
        return cls(config, grants, agent_side, bundles, notes, push)

    # -- during the run --

    @property
    def decisions(self) -> list[Any]:
        return list(self.grants.decisions) if self.grants is not None else []

    def start(
        self, run_id: str, on_event: EventSink, push_credentials: Sequence[CredentialConfig] = ()
    ) -> None:
        if self.grants is None or not self.grants.values:
            return
        from outloop_cli.credentials.broker import Broker

        self._broker = self._stack.enter_context(
            Broker.start(
                run_id=run_id,
                workspace=self.grants.workspace or "",
                secrets=self.grants.values,
                credentials=self.credentials,
                on_event=on_event,
                ca_bundles=self.ca_bundles,
                push_credentials=[*push_credentials, *([self.push] if self.push else [])],
                bindings=self.grants.bindings,
                # the agent gets these only once a human approves (engine/approval.py)
                held=self.config.approve.credentials,
            )
        )

    def agent_env(self) -> dict[str, str]:
        return self._broker.agent_env() if self._broker is not None else {}

    def agent_credential_names(self) -> list[str]:
        """The granted credentials the agent may use (not outloop's own push credential)."""
        if self.grants is None:
            return []
        return [c.name for c in self.credentials if c.name in self.grants.values]

    def release(self, name: str) -> None:
        """An approved credential: the broker answers the agent's requests for it from now on."""
        if self._broker is not None:
            self._broker.release(name)

    def renew(self, seconds: float) -> None:
        if self._broker is not None:
            self._broker.renew(seconds)

    @property
    def can_push(self) -> bool:
        return self.push is not None and self._broker is not None

    def push_env(self, remote_url: str) -> dict[str, str]:
        return self._broker.push_env(remote_url) if self._broker is not None else {}

    def proxy_endpoint(self) -> SandboxServer | None:
        """The access proxy as sandboxes with a network of their own reach it."""
        return self._broker.proxy_endpoint if self._broker is not None else None

    def broker_socket_dir(self) -> Path | None:
        if self._broker is None or "OUTLOOP_BROKER_SOCKET" not in self.agent_env():
            return None
        return Path(self._broker.socket_path).parent

    def secret(self, name: str) -> str | None:
        """A granted value, for outloop's own use (the forge API); never for the agent."""
        return self.grants.values.get(name) if self.grants is not None else None

    def forge_token(
        self,
        provider: str,
        repo_root: Path,
        remote_url: str,
        policy_path: Path | None,
        on_decision: DecisionSink,
    ) -> str:
        """The forge API token: usually granted with the run's secrets (it pushes too)."""
        secret = self.secret(provider)
        if secret is not None:
            # granted with the run's secrets: the plan checked the API against its binding
            return secret
        forge = forge_api_url(self.config, remote_url)
        return resolve_forge_token(
            provider,
            repo_root,
            remote_url,
            policy_path,
            refusal=REFUSED_FOR_RUN,
            api_url=forge[1] if forge is not None else "",
            on_decision=on_decision,
        )

    def secret_values(self) -> list[str]:
        return list(self.grants.values.values()) if self.grants is not None else []

    def masker(self, *, capabilities: bool = True, extra: Iterable[str] = ()) -> Any:
        """A Masker for every granted value, every CI value and (for logs) the live capabilities.

        Capabilities are private to the run but die with it, so the diff scan
        leaves them out: a proxy URL in a committed file is not a leaked key.
        """
        from outloop_cli.credentials import ci_env
        from outloop_cli.credentials.masking import Masker

        values: dict[str, str] = dict(ci_env.ci_values_by_variable())
        if self.grants is not None:
            values.update(self.grants.values)
        for i, value in enumerate(extra):
            values[f"token-{i}"] = value
        if capabilities and self._broker is not None:
            for i, token in enumerate(self._broker.mask_values()):
                values[f"capability-{i}"] = token
        return Masker(values)

    def scan(self, worktree: Path, paths: Iterable[str]) -> list[Any]:
        from outloop_cli.credentials.masking import scan_files

        # the granted values do not change during a run: build the patterns once
        if self._scan_masker is None:
            self._scan_masker = self.masker(capabilities=False)
        return scan_files(self._scan_masker, worktree, list(paths))

    def scan_data(self, items: Iterable[tuple[str, str, bytes]]) -> list[Any]:
        """The secret scan over ``(path, where, data)`` held in memory (a commit's blobs, its message)."""
        from outloop_cli.credentials.masking import FileHit

        if self._scan_masker is None:
            self._scan_masker = self.masker(capabilities=False)
        masker = self._scan_masker
        if not masker:
            return []
        return [
            FileHit(path, h.name, h.form, where)
            for path, where, data in items
            for h in masker.find(data)
        ]

    def close(self) -> None:
        """Stop the broker: every capability is revoked with it."""
        self._stack.close()
        self._broker = None
