"""The run's credential broker: lives in the runner process as long as the run, in memory only.

It holds the secrets granted to this run (already decided by the policy) and
hands out *access*, never the secrets themselves, except where git or a
``via: helper`` tool must hold the raw value:

- ``via: proxy``: an access proxy on 127.0.0.1 with one route per credential,
  ``http://127.0.0.1:PORT/<capability>/<name>``;
- ``via: git`` and ``via: helper``: a Unix socket (0600, in a 0700 directory,
  peer uid checked) that ``outloop credential`` asks with a capability.

Capabilities are random (``secrets.token_urlsafe``), bound to (run,
workspace, names, purpose), expire after a short TTL unless renewed, are
compared in constant time and are all revoked when the run ends. Every grant
and refusal is reported through ``on_event(name, fields)``; fields never hold
a secret value, a capability or a request body. Field names follow
``grants.Decision.audit_fields``: ``name`` is the credential's name.

Usage by the engine::

    with Broker.start(run_id=..., workspace=..., secrets=granted,
                      credentials=loop.credentials, on_event=audit) as broker:
        env = build_env(..., outloop_vars=broker.agent_env())
        broker.renew(turn_timeout + 60)            # before each agent turn
        git_env = broker.push_env(remote_url)      # outloop's own push
    # revoked and gone here
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from secrets import token_hex
from typing import Any

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials import broker_wire, ci_env, git_helper
from outloop_cli.credentials.bindings import Binding
from outloop_cli.credentials.capability import (
    CapabilityDenied,
    CapabilityTable,
    Purpose,
    Refusal,
)
from outloop_cli.credentials.proxy import SENTINEL_KEY, AccessProxy
from outloop_cli.credentials.redact import Redactor
from outloop_cli.credentials.routes import ProxyRoute
from outloop_cli.errors import CouldNotRun
from outloop_cli.sandbox import ports
from outloop_cli.sandbox.ports import (
    HANDOFF_NAME_BYTES,
    SandboxServer,
    ensure_handoff_home,
    open_handoff_on,
)

# long enough for a few agent turns' worth of git and API calls; the engine renews it
DEFAULT_TTL = 15 * 60.0
# clients of the broker's socket at once (git's credential helper asks one question each)
_MAX_SOCKET_CLIENTS = 32

# where a tool reads its key when its base URL comes from ``env``
KEY_VARIABLES = {
    "OPENAI_BASE_URL": "OPENAI_API_KEY",
    "ANTHROPIC_BASE_URL": "ANTHROPIC_API_KEY",
    "GOOGLE_GEMINI_BASE_URL": "GEMINI_API_KEY",
    "GEMINI_BASE_URL": "GEMINI_API_KEY",
}

EventSink = Callable[[str, dict[str, Any]], None]


def key_variable(env_name: str) -> str | None:
    """The variable that should hold the sentinel key for a tool configured through ``env_name``."""
    if env_name in KEY_VARIABLES:
        return KEY_VARIABLES[env_name]
    if env_name.endswith("_BASE_URL"):
        return env_name[: -len("_BASE_URL")] + "_API_KEY"
    return None


class Broker:
    """One run's broker. Build it with ``Broker.start``; use it as a context manager."""

    def __init__(
        self,
        *,
        run_id: str,
        workspace: str,
        secrets: Mapping[str, str],
        credentials: Sequence[CredentialConfig],
        on_event: EventSink,
        ca_bundles: Mapping[str, bytes] | None = None,
        push_credentials: Sequence[CredentialConfig] = (),
        ttl: float = DEFAULT_TTL,
        runtime_dir: Path | None = None,
        bindings: Mapping[str, Binding] | None = None,
        held: Sequence[str] = (),
    ) -> None:
        self.run_id = run_id
        self.workspace = workspace
        # only what was granted *and* asked for; a name the policy refused never gets here
        self._credentials = {c.name: c for c in credentials if c.name in secrets}
        self._push_credentials = {
            c.name: c for c in push_credentials if c.name in secrets and c.via == "git"
        }
        self._secrets = {
            name: secrets[name] for name in {*self._credentials, *self._push_credentials}
        }
        # where the policy lets each key go; without a policy (a broker built by hand),
        # each key is bound to exactly what its credential names
        self._bindings = {
            name: (bindings or {}).get(name) or Binding.to_itself(config)
            for name, config in {**self._push_credentials, **self._credentials}.items()
        }
        self._caps = CapabilityTable(run_id=run_id, workspace=workspace, ttl=ttl)
        # names the agent may not use until a human approves (`approve.credentials`);
        # outloop's own push is no grant to the agent and is never held
        self._held = set(held)
        self._event_lock = threading.Lock()
        self._socket_clients = 0
        self._sink = on_event
        # every value outloop holds, not only this run's: another workspace's key given
        # as a CI variable must not come back through this run's proxy either
        self._redactor = Redactor(
            [*self._secrets.values(), *ci_env.ci_values_by_variable().values()]
        )
        self._routes = self._build_routes(ca_bundles or {})
        self._runtime_dir = runtime_dir
        self._dir: Path | None = None
        self._handoff_dir: Path | None = None
        self._socket_path: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxy: AccessProxy | None = None
        self._unix_server: asyncio.base_events.Server | None = None
        self._agent_env: dict[str, str] = {}
        self._push_capability: Any = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        run_id: str,
        workspace: str,
        secrets: Mapping[str, str],
        credentials: Sequence[CredentialConfig],
        on_event: EventSink,
        ca_bundles: Mapping[str, bytes] | None = None,
        push_credentials: Sequence[CredentialConfig] = (),
        ttl: float = DEFAULT_TTL,
        runtime_dir: Path | None = None,
        bindings: Mapping[str, Binding] | None = None,
        held: Sequence[str] = (),
    ) -> Broker:
        """Start the broker's socket and proxy on a thread of their own and issue capabilities.

        ``secrets`` are the values the policy granted this run (name → value);
        ``credentials`` are the loop's requests for them; ``ca_bundles`` maps a
        credential's ``ca_bundle`` path to the PEM bytes read from the run's
        starting commit (not from the worktree, which the agent may edit);
        ``push_credentials`` are ``via: git`` credentials for outloop's own push
        that the agent must not get.
        """
        broker = cls(
            run_id=run_id,
            workspace=workspace,
            secrets=secrets,
            credentials=credentials,
            on_event=on_event,
            ca_bundles=ca_bundles,
            push_credentials=push_credentials,
            ttl=ttl,
            runtime_dir=runtime_dir,
            bindings=bindings,
            held=held,
        )
        try:
            broker._start()
        except BaseException:
            broker.close()
            raise
        return broker

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="outloop-broker-", dir=self._socket_parent()))
        self._dir.chmod(0o700)
        self._socket_path = self._dir / "broker.sock"
        if self._routes:
            # not the broker's own directory: that one is bound into sandboxes
            # (the one every view hides, unless a test gave the broker a runtime dir)
            self._handoff_dir = ensure_handoff_home(
                None if self._runtime_dir is None else str(self._runtime_dir)
            )
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"outloop-broker-{self.run_id}", daemon=True
        )
        self._thread.start()
        self._call(self._serve())
        self._agent_env = self._issue_agent_env()

    def _socket_parent(self) -> str:
        if self._runtime_dir is not None:
            return str(self._runtime_dir)
        return ports.runtime_parent()

    async def _serve(self) -> None:
        assert self._socket_path is not None
        self._unix_server = await asyncio.start_unix_server(
            self._handle_socket,
            sock=ports.unix_listener(self._socket_path),
            limit=broker_wire.MAX_MESSAGE,
        )
        self._socket_path.chmod(0o600)
        if self._routes:
            self._proxy = AccessProxy(
                self._routes,
                admit=self._admit_proxy,
                on_event=self._emit,
                redactor=self._redactor,
            )
            if self._dir is None:
                await self._proxy.start()
            else:
                await self._proxy.start(unix_path=self._dir / "proxy.sock")

    def revoke(self) -> int:
        """Revoke every capability now; the socket and proxy refuse from here on."""
        return self._caps.revoke_all()

    def close(self) -> None:
        """Revoke, stop serving, forget the secrets and remove the socket directory."""
        if self._closed:
            return
        self._closed = True
        self.revoke()
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            try:
                self._call(self._shutdown(), timeout=10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
        self._secrets.clear()
        self._routes = {}
        # the handoff sockets went with the proxy; their directory is every run's
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _shutdown(self) -> None:
        if self._unix_server is not None:
            self._unix_server.close()
            await self._unix_server.wait_closed()
        if self._proxy is not None:
            await self._proxy.close()
        # whatever is still in flight (a client that never finished its request) ends here
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _call(self, coro: Any, timeout: float = 30) -> Any:
        assert self._loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    # --- what the engine uses -----------------------------------------------------

    @property
    def socket_path(self) -> Path:
        assert self._socket_path is not None
        return self._socket_path

    @property
    def proxy_endpoint(self) -> SandboxServer | None:
        """The proxy as sandboxes with a network of their own reach it; if any."""
        if self._proxy is None or self._dir is None:
            return None
        return SandboxServer(self._proxy.port, self._dir / "proxy.sock", self._open_handoff)

    def _open_handoff(self) -> Path:
        """A handoff socket of the proxy's for one sandbox's start (``sandbox/handoff.py``).

        In the directory every sandbox's view hides (``ports.handoff_home``; the
        broker's own is bound in, for git's credential helper), at a name nobody
        can guess in advance.
        """
        proxy, loop = self._proxy, self._loop
        if self._closed or proxy is None or loop is None or not loop.is_running():
            raise CouldNotRun(
                "the access proxy has stopped: no sandbox can reach it",
                hint="start the run again (`outloop resume`)",
            )
        assert self._handoff_dir is not None
        path = self._handoff_dir / token_hex(HANDOFF_NAME_BYTES)
        return open_handoff_on(loop, proxy.open_handoff(path), path)

    @property
    def proxy_port(self) -> int | None:
        return self._proxy.port if self._proxy is not None else None

    def agent_env(self) -> dict[str, str]:
        """Variables for the agent: proxy URLs and sentinel keys; helper access if asked for."""
        return dict(self._agent_env)

    def renew(self, ttl: float | None = None) -> None:
        """Extend every live capability to now + ``ttl`` (default: the broker's TTL).

        The engine calls it before each agent turn (with the turn's timeout
        plus a margin) so capabilities live as long as the work that needs
        them, and no longer once the run stops renewing.
        """
        self._caps.renew(ttl)

    def release(self, name: str) -> None:
        """A human approved credential ``name``: the agent's requests for it are answered now."""
        self._held.discard(name)

    def push_env(self, remote_url: str, credential: str | None = None) -> dict[str, str]:
        """The environment (to add to git's) for outloop's own push of the scratch branch.

        Issues a fresh push capability, scoped to the remote's host *and* repo
        path, and revokes the previous one. Hooks and the ``ext::``/``fd::``
        transports are switched off for the push, so that config or hooks an
        agent planted in the repository cannot run code that sees it. A remote
        that is not http(s), or no matching ``via: git`` credential, gets the
        hardening alone (git then finds no credential, which suits a local or
        ssh remote).
        """
        if self._push_capability is not None:
            self._caps.revoke(self._push_capability)
            self._push_capability = None
        entries: list[tuple[str, str]] = list(git_helper.PUSH_HARDENING)
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
        scope = self._push_scope(remote_url, credential)
        if scope is None:
            # still our helper (after the reset), so a stray prompt is declined, not asked
            entries += git_helper.helper_entries([])
            return {**env, **git_helper.config_env(entries)}
        capability = self._caps.issue(Purpose.PUSH, [scope.credential], path=scope.path)
        self._push_capability = capability
        entries += git_helper.helper_entries([scope])
        env.update(git_helper.config_env(entries))
        env[broker_wire.ENV_SOCKET] = str(self.socket_path)
        env[broker_wire.ENV_CAPABILITY] = capability.token
        return env

    def mask_values(self) -> list[str]:
        """Capability tokens in use: not secrets, but private to the run; mask them in logs."""
        return self._caps.live_tokens()

    # --- internals ----------------------------------------------------------------

    def _build_routes(self, ca_bundles: Mapping[str, bytes]) -> dict[str, ProxyRoute]:
        routes = {}
        for name, config in self._credentials.items():
            if config.via != "proxy":
                continue
            pem = None
            if config.ca_bundle is not None:
                data = ca_bundles.get(config.ca_bundle)
                if data is None:
                    raise CouldNotRun(
                        f"credential `{name}`: ca_bundle {config.ca_bundle} was not provided",
                        hint="commit the CA bundle; it is read from the run's starting commit",
                    )
                pem = data.decode("ascii", errors="replace")
            routes[name] = ProxyRoute.build(config, self._secrets[name], pem, self._bindings[name])
        return routes

    def _issue_agent_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self._proxy is not None:
            for name, config in self._credentials.items():
                if config.via != "proxy" or config.env is None:
                    continue
                capability = self._caps.issue(Purpose.PROXY, [name])
                env[config.env] = self._proxy.route_url(capability.token, name)
                key_var = key_variable(config.env)
                if key_var is not None:
                    env[key_var] = SENTINEL_KEY
        helper_names = [n for n, c in self._credentials.items() if c.via in ("git", "helper")]
        if helper_names:
            capability = self._caps.issue(Purpose.AGENT, helper_names)
            env[broker_wire.ENV_SOCKET] = str(self.socket_path)
            env[broker_wire.ENV_CAPABILITY] = capability.token
            scopes = [
                git_helper.GitScope(n, c.host)
                for n, c in self._credentials.items()
                if c.via == "git" and c.host
            ]
            if scopes:
                env.update(git_helper.config_env(git_helper.helper_entries(scopes)))
        return env

    def _push_scope(self, remote_url: str, credential: str | None) -> git_helper.GitScope | None:
        candidates = {
            **{n: c for n, c in self._credentials.items() if c.via == "git"},
            **self._push_credentials,
        }
        probe = git_helper.remote_scope(remote_url, "")
        if probe is None:
            return None
        for name, config in candidates.items():
            if credential is not None and name != credential:
                continue
            if config.host and config.host.lower() == probe.host.lower():
                if not self._bindings[name].allows_host(probe.host):
                    continue
                return git_helper.GitScope(name, probe.host, probe.path)
        return None

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        # the audit log adds the run id, time and sequence itself
        event = {"workspace": self.workspace, **fields}
        with self._event_lock:
            self._sink(name, event)

    def _admit_proxy(self, token: str, name: str) -> None:
        self._caps.check(token, (Purpose.PROXY,), name)
        if name in self._held:
            raise CapabilityDenied(Refusal.AWAITING_APPROVAL)

    # --- the socket -----------------------------------------------------------------

    async def _handle_socket(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._socket_clients >= _MAX_SOCKET_CLIENTS:
            # each waits up to 10 s for its request: the runner's file descriptors are
            # not the agent's to hold
            writer.close()
            return
        self._socket_clients += 1
        try:
            reply = await self._answer_socket(reader, writer)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._socket_clients -= 1
            writer.close()

    async def _answer_socket(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        peer_uid = _peer_uid(writer)
        if peer_uid is not None and peer_uid != os.getuid():
            self._emit("credential_denied", {"via": "socket", "reason": "peer_uid"})
            return {"ok": False, "reason": "refused"}
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            request = json.loads(line)
        except (ValueError, asyncio.TimeoutError, asyncio.LimitOverrunError):
            self._emit("credential_denied", {"via": "socket", "reason": "bad_request"})
            return {"ok": False, "reason": "bad_request"}
        if not isinstance(request, dict):
            return {"ok": False, "reason": "bad_request"}
        op = request.get("op")
        token = request.get("capability")
        if not isinstance(token, str):
            return self._deny({"via": "socket"}, "capability_unknown")
        if op == "git":
            return self._answer_git(token, request)
        if op == "token":
            return self._answer_token(token, request.get("name"))
        if op == "bad_input":
            return self._answer_bad_input(token, request.get("reason"))
        return self._deny({"via": "socket", "op": str(op)[:40]}, "bad_request")

    def _answer_git(self, token: str, request: Mapping[str, Any]) -> dict[str, Any]:
        protocol, host, path = (
            _short(request.get("protocol")),
            _short(request.get("host")),
            _short(request.get("path")),
        )
        fields: dict[str, Any] = {"via": "git", "protocol": protocol, "host": host}
        if path is not None:
            fields["path"] = path
        try:
            capability = self._caps.check(token, (Purpose.AGENT, Purpose.PUSH))
        except CapabilityDenied as denied:
            return self._deny(fields, denied.reason.value)
        fields["purpose"] = capability.purpose.value
        scopes = []
        for name in sorted(capability.names):
            config = self._credentials.get(name) or self._push_credentials.get(name)
            if config is None or config.via != "git" or not config.host:
                continue
            if capability.purpose is Purpose.PUSH:
                scopes.append(git_helper.GitScope(name, config.host, capability.path))
            else:
                scopes.append(git_helper.GitScope(name, config.host))
        reason = "host_not_allowed"
        for scope in scopes:
            why = scope.refusal(protocol, host, path)
            if (
                why is None
                and capability.purpose is Purpose.AGENT
                and scope.credential in self._held
            ):
                why = Refusal.AWAITING_APPROVAL.value
            if why is None and not self._bindings[scope.credential].allows_host(scope.host):
                # defence in depth: the plan checked the host against the policy's binding
                why = "outside_binding"
            if why is None:
                fields["name"] = scope.credential
                self._emit("credential_granted", fields)
                return {
                    "ok": True,
                    "username": git_helper.DEFAULT_USERNAME,
                    "password": self._secrets[scope.credential],
                    "expires": self._caps.expires_at_wall(capability),
                }
            # the most specific reason: right host but wrong protocol or path
            if why != "host_not_allowed":
                reason = why
        return self._deny(fields, reason)

    def _answer_token(self, token: str, name: object) -> dict[str, Any]:
        fields: dict[str, Any] = {"via": "helper", "name": _short(name)}
        if not isinstance(name, str):
            return self._deny(fields, "bad_request")
        try:
            capability = self._caps.check(token, (Purpose.AGENT,), name)
        except CapabilityDenied as denied:
            return self._deny(fields, denied.reason.value)
        config = self._credentials.get(name)
        if config is None or config.via != "helper":
            return self._deny(fields, "credential_not_via_helper")
        if name in self._held:
            return self._deny(fields, Refusal.AWAITING_APPROVAL.value)
        self._emit("credential_granted", fields)
        return {
            "ok": True,
            "password": self._secrets[name],
            "expires": self._caps.expires_at_wall(capability),
        }

    def _answer_bad_input(self, token: str, reason: object) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "via": "git",
            "detail": self._redactor.redact_text(str(reason)[:200]),
        }
        try:
            self._caps.check(token, (Purpose.AGENT, Purpose.PUSH))
        except CapabilityDenied as denied:
            fields["capability"] = denied.reason.value
        return self._deny(fields, "malformed_request")

    def _deny(self, fields: dict[str, Any], reason: str) -> dict[str, Any]:
        self._emit("credential_denied", {**fields, "reason": reason})
        return {"ok": False, "reason": reason}


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _short(value: object) -> str | None:
    if value is None:
        return None
    return str(value)[:200]


__all__ = ["DEFAULT_TTL", "Broker", "Refusal", "key_variable"]
