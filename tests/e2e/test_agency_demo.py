"""`outloop demo --agency`: three clients' loops at once, each CRM reached only with its own key.

The real command, end to end: it starts the scripted CRM servers (real HTTP on
127.0.0.1), stores the keys with `outloop secrets set` in a private Secret
Service (gnome-keyring on a D-Bus session of its own) or hands them over as CI
variables, and runs `outloop run` in the three client repositories at once.
The keys are this test's canaries (given as CI variables, which the demo uses
as its keys), so every file the demo left, every commit of every repository
and run, and its output can be searched for them in every encoding.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.support.credentials import assert_no_leak, canary
from tests.support.e2e import run_cli

CLIENTS = ("acme", "globex", "initech")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agency-crm-sync"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _emails(rows: list[dict[str, Any]]) -> set[str]:
    return {str(row["email"]).lower() for row in rows}


def _leads(repo: Path) -> list[dict[str, str]]:
    with (repo / "leads.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _table_row(stdout: str, client: str) -> list[str]:
    [line] = [line for line in stdout.splitlines() if re.match(rf"{client} +\d+ ", line)]
    return line.split()


def _every_commit(git_dir: Path) -> str:
    """Messages, authors and patches of every commit reachable from any ref of ``git_dir``."""
    done = subprocess.run(
        ["git", "--git-dir", str(git_dir), "log", "--all", "-p", "--format=%an %ae%n%B"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {client: canary() for client in CLIENTS}
    for client, value in values.items():
        monkeypatch.setenv(f"OUTLOOP_SECRET_{client.upper()}_CRM", value)
    return values


def test_three_clients_sync_at_once_and_acme_cannot_reach_globex(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    root = tmp_path / "agency"

    done = run_cli(
        tmp_path, "demo", "--agency", "--secrets", "keyring", "--dir", str(root), timeout=180
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    # the keys went into a real keyring with outloop's own command, one per workspace
    assert "keys: keyring (private Secret Service" in done.stdout
    index = json.loads((root / "user/data/outloop/secrets-index.json").read_text())
    assert {(s["workspace"], s["name"]) for s in index["secrets"]} == {
        (client, "crm") for client in CLIENTS
    }
    # the policy is outside every repository and gives each its own key, bound to its CRM
    policy = (root / "user/config/outloop/policy.yml").read_text()
    ports = {c: json.loads((root / "crm" / c / "ready.json").read_text())["port"] for c in CLIENTS}
    for client in CLIENTS:
        assert f'upstreams: ["http://127.0.0.1:{ports[client]}"]' in policy

    for client in CLIENTS:
        repo = root / "clients" / client
        _, iterations, converged, rows, refused, run_id = _table_row(done.stdout, client)
        # a batch of two leads per turn: every client takes two turns or more
        assert int(iterations) >= 2 and converged == "yes", done.stdout
        # the CRM holds exactly the leads of leads.csv, by its own export and its own log
        leads = _leads(repo)
        export = json.loads((root / "crm" / client / "export/export.json").read_text())
        assert _emails(export["leads"]) == _emails(leads)
        assert export["count"] == len(leads) and rows == f"{len(leads)}/{len(leads)}"
        # every request that reached a CRM with a key carried that CRM's own client's key
        requests = _jsonl(root / "crm" / client / "requests.jsonl")
        assert [r for r in requests if r["credential"] == "wrong"] == []
        assert all(r["status"] == 401 for r in requests if r["credential"] == "none")
        posts = [r for r in requests if r["method"] == "POST" and r["credential"] == "own"]
        assert len(posts) == len(leads) - len(_leads_seeded(client))
        # the run's record agrees, and the sync log is committed on the run's branch
        record = json.loads((repo / ".git/outloop/runs" / run_id / "run.json").read_text())
        assert record["stop_reason"] == "goal_met"
        log = git(repo, "show", f"{record['branch']}:sync-log.md")
        assert log.count("\n## turn ") == int(iterations)
        if client != "acme":
            assert refused == "0"

    # acme's agent went for globex's CRM through the proxy: refused, and audited in acme's run
    acme = root / "clients/acme"
    run_id = _table_row(done.stdout, "acme")[5]
    audit = _jsonl(acme / ".git/outloop/runs" / run_id / "audit.jsonl")
    denied = {e["reason"]: e for e in audit if e["event"] == "credential_denied"}
    assert set(denied) == {"absolute_uri_refused", "credential_not_in_scope"}
    for reason, event in denied.items():
        line = next(line for line in done.stdout.splitlines() if f"refused ({reason}" in line)
        assert line.lstrip().startswith("through the proxy")
        assert f"audit event #{event['seq']} in acme's audit log" in line
    assert re.search(
        r"^acme → globex CRM: refused \(policy\), audit events #\d+, #\d+ in acme's run, "
        r"event #\d+ in refused\.jsonl$",
        done.stdout,
        re.MULTILINE,
    ), done.stdout
    # ...directly it got nowhere: globex's CRM never saw a request without its key
    globex_requests = _jsonl(root / "crm/globex/requests.jsonl")
    assert [r for r in globex_requests if r["credential"] != "own"] == []
    assert "globex's CRM saw 0 request(s) without a key, 0 with another client's key" in (
        done.stdout
    )
    # acme's loop that points acme's key at globex's CRM never started: the binding refused it
    [refusal] = _jsonl(acme / ".git/outloop/refused.jsonl")
    assert refusal["event"] == "credential_denied" and refusal["outside_binding"] is True
    assert refusal["loop_at"].startswith(".outloop/copy-to-partner.yml@")
    assert f"audit event #{refusal['seq']} in {acme}/.git/outloop/refused.jsonl" in done.stdout
    assert len(list((acme / ".git/outloop/runs").iterdir())) == 1

    # no key anywhere: output, any file the demo left (logs, records, audit logs, reports,
    # the CRMs' logs, the keyring's encrypted files), any commit of any repo or run
    sinks: list[str | bytes] = [done.stdout, done.stderr]
    sinks += [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    for client in CLIENTS:
        git_dir = root / "clients" / client / ".git"
        sinks.append(_every_commit(git_dir))
        for run in (git_dir / "outloop/runs").iterdir():
            sinks.append(_every_commit(run / "git"))
            worktree = Path(json.loads((run / "run.json").read_text())["worktree"])
            sinks += [p.read_bytes() for p in worktree.rglob("*") if p.is_file()]
    for client, value in keys.items():
        assert_no_leak(value, *sinks, where=f"the agency demo's files and commits ({client})")


def _leads_seeded(client: str) -> list[dict[str, str]]:
    with (EXAMPLE / "data" / f"{client}-crm-seed.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_with_ci_variables_the_runs_get_the_keys_without_a_keyring(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    root = tmp_path / "agency"

    done = run_cli(tmp_path, "demo", "--agency", "--secrets", "ci", "--dir", str(root))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "keys: CI variables" in done.stdout
    # nothing was stored anywhere: the values lived in the runs' memory only
    assert not (root / "user/data/outloop/secrets-index.json").exists()
    assert not (root / "secret-service").exists()
    for client in CLIENTS:
        assert _table_row(done.stdout, client)[2] == "yes"
    sinks = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    for value in keys.values():
        assert_no_leak(value, done.stdout, done.stderr, *sinks, where="a CI-variables run")


def test_control_the_attack_reaches_globex_when_nothing_stands_in_the_way(
    tmp_path: Path,
) -> None:
    """acme's agent run by hand, no outloop: its injected POST does arrive at globex's CRM.

    So the demo's "globex saw nothing" is the sandbox's doing, not an attack that
    never left. (Without a key it still gets 401: the CRM's own check.)
    """
    servers, ports = {}, {}
    try:
        for client in ("acme", "globex"):
            state = tmp_path / client
            servers[client] = subprocess.Popen(
                [sys.executable, str(EXAMPLE / "crm_server.py"), "--client", client,
                 "--state", str(state)],
                stdin=subprocess.PIPE,
            )  # fmt: skip
            assert servers[client].stdin is not None
            servers[client].stdin.write(canary().encode() + b"\n")
            servers[client].stdin.close()
            ports[client] = _wait_for_port(state / "ready.json", servers[client])
        work = tmp_path / "acme-work"
        work.mkdir()
        leads = (EXAMPLE / "data/acme.csv").read_text()
        (work / "leads.csv").write_text(
            leads.replace("{{globex_crm}}", f"http://127.0.0.1:{ports['globex']}")
        )
        (work / "prompt.md").write_text("sync\n")
        agent = EXAMPLE / "client/.outloop/crm-sync/sync_agent.py"

        done = subprocess.run(
            [sys.executable, str(agent), "prompt.md"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "CRM_URL": f"http://127.0.0.1:{ports['acme']}/cap/crm"},
        )

        assert done.returncode == 0, done.stderr
        reached = _jsonl(tmp_path / "globex/requests.jsonl")
        assert [(r["method"], r["path"], r["credential"], r["status"]) for r in reached] == [
            ("POST", "/leads", "none", 401)
        ]
        assert re.search(r"directly, http://127\.0\.0\.1:\d+/leads: HTTP 401", done.stdout)
        # and a key that is not globex's is told apart from none at all
        stolen = canary()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['globex']}/leads",
            headers={"Authorization": f"Bearer {stolen}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        last = _jsonl(tmp_path / "globex/requests.jsonl")[-1]
        assert last["credential"] == "wrong"
        assert (
            last["wrong_fingerprint"]
            == hashlib.sha256(f"Bearer {stolen}".encode()).hexdigest()[:16]
        )
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=10)


def _wait_for_port(ready: Path, server: subprocess.Popen[bytes]) -> int:
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ready.exists():
            return int(json.loads(ready.read_text())["port"])
        assert server.poll() is None, "the CRM server exited"
        time.sleep(0.05)
    raise AssertionError("the CRM server did not start")


def test_a_non_empty_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")

    done = run_cli(tmp_path, "demo", "--agency", "--dir", str(target))

    assert done.returncode == 2, done.stderr
    assert "is not empty" in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_with_ui_the_dashboard_serves_the_runs_after_the_demo(tmp_path: Path) -> None:
    import os
    import signal
    import urllib.parse

    root = tmp_path / "agency"

    done = run_cli(tmp_path, "demo", "--agency", "--ui", "--secrets", "ci", "--dir", str(root))

    found = re.search(r"^dashboard: (http://127\.0\.0\.1:(\d+)/\?token=\S+)$", done.stdout, re.M)
    pid_match = re.search(r"still serving \(pid (\d+)\)", done.stdout)
    assert found and pid_match, done.stdout + done.stderr
    pid = int(pid_match.group(1))
    try:
        assert done.returncode == 0, done.stderr
        url, port = found.group(1), int(found.group(2))
        # without the token the dashboard refuses; with it, it answers
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert refused.value.code in (401, 403)
        import http.client

        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"{parts.path}?{parts.query}")
        answer = conn.getresponse()
        # the token is traded for a session cookie (a redirect that drops it from the URL)
        assert answer.status in (200, 302, 303), answer.status
        assert answer.status == 200 or answer.getheader("Set-Cookie")
        conn.close()
    finally:
        os.kill(pid, signal.SIGTERM)
