"""``outloop demo --agency``: three clients' nightly CRM syncs at once, and the proof of isolation.

The demo builds three client repositories, starts a scripted CRM per client
on 127.0.0.1 (each accepting only its own client's key), stores each key for
its workspace (a private Secret Service when one can be started, else CI
variables), writes the user's policy, and then runs ``outloop run crm-sync``
in all three repositories at once, as a user would. Meanwhile acme's agent,
misled by a lead planted in its data, tries globex's CRM; a second loop in
acme's repo asks for acme's key to be sent there. What outloop refused is
read back from the audit logs; what each CRM received, from the CRM's own
request log.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outloop_cli.agency.world import (
    ATTACKER,
    CLIENTS,
    LOOP,
    ROGUE_LOOP,
    VICTIM,
    Layout,
    child_env,
    create_client_repo,
    crm_server_argv,
    read_ready_port,
    wait_timeout,
    write_policy,
)
from outloop_cli.credentials.demo_keys import SECRET_NAME, DemoKey, demo_key
from outloop_cli.errors import CouldNotRun, UsageError
from outloop_cli.process.background import Background
from outloop_cli.process.spawn import run_captured, run_streamed

SECRETS_MODES = ("auto", "keyring", "ci")
# how long one client's whole run may take; the demo's take a few seconds
_RUN_TIMEOUT = 240.0
_WAYS = {
    "absolute_uri_refused": "through the proxy, as a forward proxy",
    "credential_not_in_scope": "through the proxy, under another route",
}

Step = Callable[[str], None]


@dataclass(frozen=True)
class Refusal:
    """One refused attempt, as the audit log has it."""

    way: str
    reason: str
    status: int | None
    seq: int | None
    log: Path


@dataclass(frozen=True)
class ClientResult:
    """One client's run: how it ended, what outloop refused, and what its CRM received."""

    client: str
    repo: Path
    run_id: str | None
    branch: str | None
    # whether the agent's turns ran in outloop's sandbox (its own network: loopback only)
    sandboxed: bool
    iterations: int
    stop_reason: str
    converged: bool
    leads: int
    crm_rows: int
    refused: tuple[Refusal, ...]
    audit: Path | None
    # what the client's CRM saw: requests with its own key, with none, with another
    crm_credentials: Mapping[str, int]
    log: Path


@dataclass(frozen=True)
class AgencyDemo:
    """What the whole demo did: each client's result, and how the rogue loop was refused."""

    root: Path
    secrets_backend: str
    how_runs_started: str
    clients: tuple[ClientResult, ...]
    # acme's rogue loop, refused before it started (None: it was not)
    binding_refusal: Refusal | None
    rogue_exit: int
    # what `outloop run` said when it refused it
    rogue_message: str
    # what acme's agent saw when it went to globex's CRM directly
    direct_attempt: str | None
    # the command that shows these runs in the dashboard (None: no `outloop ui` in this build)
    dashboard: str | None = None
    # with --ui: the dashboard's URL (with its token) and the pid that serves it
    dashboard_url: str | None = None
    dashboard_pid: int | None = None

    @property
    def attacker(self) -> ClientResult:
        return next(c for c in self.clients if c.client == ATTACKER)

    @property
    def victim(self) -> ClientResult:
        return next(c for c in self.clients if c.client == VICTIM)

    @property
    def ok(self) -> bool:
        refused_ways = {r.reason for r in self.attacker.refused}
        return (
            all(c.converged and c.leads == c.crm_rows for c in self.clients)
            and set(_WAYS) <= refused_ways
            and self.binding_refusal is not None
            and all(c.crm_credentials.get("wrong", 0) == 0 for c in self.clients)
        )


def run_agency_demo(
    target: Path | None,
    *,
    secrets_mode: str = "auto",
    ui: bool = False,
    step: Step = lambda _: None,
) -> AgencyDemo:
    if ui and not has_dashboard():
        raise UsageError(
            "--ui: this build of outloop has no dashboard (`outloop ui`)",
            hint="run the demo without --ui; `outloop show RUN` shows a run",
        )
    if secrets_mode not in SECRETS_MODES:
        raise UsageError(
            f"unknown --secrets {secrets_mode!r}", hint=f"choose {', '.join(SECRETS_MODES)}"
        )
    if target is None:
        target = Path(tempfile.mkdtemp(prefix="outloop-agency-"))
    elif target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty", hint="give --dir a new or empty directory")
    layout = Layout(target.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    keys = {client: demo_key(client) for client in CLIENTS}
    with ExitStack() as stack:
        ports = _start_crms(layout, keys, stack, step)
        for client in CLIENTS:
            create_client_repo(layout, client, ports)
        step(f"client repositories: {layout.clients}/{{{','.join(CLIENTS)}}}")
        policy = write_policy(layout, ports)
        step(f"policy (outside every repo): {policy}")
        backend, secret_env = _store_keys(layout, keys, secrets_mode, stack, step)
        env = child_env(layout, secret_env)
        dashboard = _start_dashboard(layout, env, step) if ui else None
        how, outcomes = _run_all(layout, env, step)
        rogue_exit, rogue_message = _run_rogue_loop(layout, env, step)
    results = tuple(_client_result(layout, c, outcomes.get(c)) for c in CLIENTS)
    return AgencyDemo(
        root=layout.root,
        secrets_backend=backend,
        how_runs_started=how,
        clients=results,
        binding_refusal=_binding_refusal(layout),
        rogue_exit=rogue_exit,
        rogue_message=rogue_message,
        direct_attempt=_direct_attempt(layout, results),
        dashboard=_dashboard_command(layout),
        dashboard_url=dashboard[0] if dashboard else None,
        dashboard_pid=dashboard[1] if dashboard else None,
    )


# --- the CRMs and the keys --------------------------------------------------------------


def _start_crms(
    layout: Layout, keys: Mapping[str, DemoKey], stack: ExitStack, step: Step
) -> dict[str, int]:
    ports: dict[str, int] = {}
    for client in CLIENTS:
        layout.crm_state(client).mkdir(parents=True)
        server = stack.enter_context(
            Background(
                crm_server_argv(layout, client),
                cwd=layout.root,
                env=child_env(layout, {}),
                log_path=layout.logs / f"crm-{client}.log",
            )
        )
        server.send(keys[client].value.encode() + b"\n")
        ports[client] = server.wait_for(
            lambda c=client: read_ready_port(layout, c),  # type: ignore[misc]
            timeout=wait_timeout(),
            what="listening",
        )
        step(f"{client}'s CRM: http://127.0.0.1:{ports[client]} (accepts only {client}'s key)")
    return ports


def _store_keys(
    layout: Layout,
    keys: Mapping[str, DemoKey],
    mode: str,
    stack: ExitStack,
    step: Step,
) -> tuple[str, dict[str, str]]:
    """Each key stored for its workspace; returns the backend's description and the runs' env."""
    from outloop_cli.credentials.private_keyring import PrivateSecretService, missing_programs

    if mode in ("auto", "keyring"):
        missing = missing_programs()
        if not missing:
            service = stack.enter_context(PrivateSecretService(layout.root / "secret-service"))
            keyring_env = service.keyring_env()
            env = child_env(layout, keyring_env)
            for client, key in keys.items():
                done = run_captured(
                    [*_outloop(), "secrets", "set", SECRET_NAME, "--workspace", client],
                    cwd=layout.root,
                    env=env,
                    timeout=60,
                    stdin_data=key.value.encode(),
                )
                if done.returncode != 0:
                    raise CouldNotRun(
                        f"`outloop secrets set {SECRET_NAME} --workspace {client}` failed: "
                        + _tail(done.stderr),
                    )
            step(
                "keys: `outloop secrets set crm --workspace <client>` into a private Secret "
                "Service (gnome-keyring on its own D-Bus session; yours is not touched)"
            )
            return "keyring (private Secret Service, gnome-keyring)", keyring_env
        if mode == "keyring":
            raise CouldNotRun(
                f"no private Secret Service: {', '.join(missing)} not installed",
                hint="apt install dbus gnome-keyring, or run with --secrets ci",
            )
    names = ", ".join(key.ci_variable for key in keys.values())
    step(f"keys: CI variables {names} (no Secret Service could be started)")
    return "CI variables (OUTLOOP_SECRET_<WORKSPACE>_CRM)", {
        key.ci_variable: key.value for key in keys.values()
    }


# --- the runs ---------------------------------------------------------------------------


def _outloop() -> list[str]:
    return [sys.executable, "-m", "outloop_cli"]


def _run_all(
    layout: Layout, env: Mapping[str, str], step: Step
) -> tuple[str, dict[str, dict[str, Any]]]:
    """One ``outloop run crm-sync --repo A --repo B --repo C --jobs 3``; the records by client.

    Its output is logged and passed on line by line, so the three runs show as
    they go. Ctrl-C stops the command with its whole tree: every run ends as
    interrupted.
    """
    layout.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    repos = [arg for client in CLIENTS for arg in ("--repo", str(layout.repo(client)))]
    argv = ["run", LOOP, *repos, "--jobs", str(len(CLIENTS)), "--json"]
    how = (
        f"`outloop run {LOOP} --repo <each client> --jobs {len(CLIENTS)}`: one command, all at once"
    )
    step(f"running {how}")
    log = runs_log(layout)
    lines = _Lines(lambda line: step(f"runs | {line}"))
    run_streamed(
        [*_outloop(), *argv],
        cwd=layout.root,
        env=env,
        log_path=log,
        timeout=_RUN_TIMEOUT,
        on_output=lines.feed,
    )
    by_repo = {str(layout.repo(client).resolve()): client for client in CLIENTS}
    records: dict[str, dict[str, Any]] = {}
    for record in _json_lines(log.read_bytes()):
        root = record.get("repo_root")
        client = by_repo.get(str(Path(root).resolve())) if isinstance(root, str) else None
        if client is not None:
            records[client] = record
    return how, records


def runs_log(layout: Layout) -> Path:
    return layout.logs / "runs.log"


class _Lines:
    """Chunks of a child's output as whole lines; JSON (the run records) is not shown."""

    def __init__(self, emit: Step) -> None:
        self._emit = emit
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line and not line.startswith("{"):
                self._emit(line)


def _run_rogue_loop(layout: Layout, env: Mapping[str, str], step: Step) -> tuple[int, str]:
    step(
        f"in {ATTACKER}'s repo: `outloop run {ROGUE_LOOP}` (sends {ATTACKER}'s key to {VICTIM}'s CRM)"
    )
    done = run_captured(
        [*_outloop(), "run", ROGUE_LOOP],
        cwd=layout.repo(ATTACKER),
        env=env,
        timeout=_RUN_TIMEOUT,
    )
    (layout.logs / f"run-{ATTACKER}-{ROGUE_LOOP}.log").write_bytes(done.stderr)
    first = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return done.returncode, first[0] if first else ""


def _json_lines(data: bytes) -> list[dict[str, Any]]:
    found = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
    return found


def _tail(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


# --- what happened, from the records ----------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    return _json_lines(text.encode())


def _client_result(layout: Layout, client: str, record: dict[str, Any] | None) -> ClientResult:
    leads = _count_leads(layout.repo(client) / "leads.csv")
    export = _read_json(layout.crm_export(client))
    crm_rows = int(export.get("count", 0)) if export else 0
    seen: dict[str, int] = {}
    for request in _read_jsonl(layout.crm_state(client) / "requests.jsonl"):
        kind = str(request.get("credential"))
        seen[kind] = seen.get(kind, 0) + 1
    if record is None:
        return ClientResult(
            client, layout.repo(client), None, None, False, 0, "did not run", False, leads, crm_rows, (),
            None, seen, runs_log(layout),
        )  # fmt: skip
    audit_text = (record.get("files") or {}).get("audit")
    audit = Path(audit_text) if isinstance(audit_text, str) and audit_text else None
    refused = _refusals(audit) if audit is not None else ()
    iterations = [i for i in record.get("iterations", []) if i.get("n", 0) > 0]
    stop = str(record.get("stop_reason") or "?")
    return ClientResult(
        client=client,
        repo=layout.repo(client),
        run_id=record.get("run_id"),
        branch=record.get("branch"),
        sandboxed=bool((record.get("sandbox") or {}).get("active")),
        iterations=len(iterations),
        stop_reason=stop,
        converged=stop == "goal_met",
        leads=leads,
        crm_rows=crm_rows,
        refused=refused,
        audit=audit,
        crm_credentials=seen,
        log=runs_log(layout),
    )


def _refusals(audit: Path) -> tuple[Refusal, ...]:
    return tuple(
        Refusal(
            way=_WAYS.get(str(event.get("reason")), "through the proxy"),
            reason=str(event.get("reason")),
            status=event.get("status") if isinstance(event.get("status"), int) else None,
            seq=event.get("seq") if isinstance(event.get("seq"), int) else None,
            log=audit,
        )
        for event in _read_jsonl(audit)
        if event.get("event") == "credential_denied"
    )


def _binding_refusal(layout: Layout) -> Refusal | None:
    log = layout.repo(ATTACKER) / ".git" / "outloop" / "refused.jsonl"
    for event in _read_jsonl(log):
        if event.get("event") == "credential_denied" and event.get("outside_binding"):
            return Refusal(
                way=f"a loop sending {ATTACKER}'s key to {VICTIM}'s CRM",
                reason="outside_binding",
                status=None,
                seq=event.get("seq") if isinstance(event.get("seq"), int) else None,
                log=log,
            )
    return None


def _direct_attempt(layout: Layout, results: Sequence[ClientResult]) -> str | None:
    """The line of acme's committed sync log that says how the direct attempt went."""
    from outloop_cli.git.repo import Repository, discover

    attacker = next(r for r in results if r.client == ATTACKER)
    if attacker.branch is None:
        return None
    repo = Repository(discover(attacker.repo))
    head = repo.branch_head(attacker.branch)
    text = repo.read_file(head, "sync-log.md") if head else None
    for line in (text or b"").decode("utf-8", "replace").splitlines():
        if line.strip().startswith("- directly,"):
            return line.strip()[2:]
    return None


def has_dashboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("outloop_cli.commands.ui") is not None


def _dashboard_args(layout: Layout) -> list[str]:
    return ["ui", *(arg for c in CLIENTS for arg in ("--repo", str(layout.repo(c))))]


def _dashboard_command(layout: Layout) -> str | None:
    import shlex

    if not has_dashboard():
        return None
    return " ".join(["outloop", *(shlex.quote(arg) for arg in _dashboard_args(layout))])


_URL_LINE = re.compile(r"^(http://127\.0\.0\.1:\d+/\S*)$", re.MULTILINE)


def _start_dashboard(layout: Layout, env: Mapping[str, str], step: Step) -> tuple[str, int]:
    """``outloop ui`` for the three repos, left serving after the demo (its own session)."""
    log = layout.logs / "dashboard.log"
    server = Background(
        [*_outloop(), *_dashboard_args(layout)], cwd=layout.root, env=env, log_path=log
    )
    try:
        url = server.wait_for(
            lambda: _first_url(log), timeout=wait_timeout(), what="printing its URL"
        )
    except BaseException:
        server.stop()
        raise
    server.detach()
    step(f"dashboard: {url} (open it to watch the runs live)")
    return url, server.pid


def _first_url(log: Path) -> str | None:
    try:
        found = _URL_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def _count_leads(path: Path) -> int:
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.DictReader(f))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
