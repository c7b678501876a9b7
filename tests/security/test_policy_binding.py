"""A repository cannot send a client's key where the policy does not bind it.

Real runs, real policy files, real HTTP servers: the upstream the policy names
listens on 127.0.0.1; "the internet" is a server on 127.0.0.2. A loop file
(or a pull request's commit) that points client A's key at 127.0.0.2 is refused
before any agent turn, with the loop file's line, the key and the policy's
line, and the refusal is in the audit log. Each attack has a control: the same
run with the binding widened in the policy shows the key would have gone there.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory, git
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import assert_no_leak, bound
from tests.support.e2e import agent_cmd, loop_yaml, run_cli, runs_dir


def _key() -> str:
    return f"sk-a/{secrets.token_urlsafe(18)}+Z="


def _loop(upstream: str, **cred: Any) -> str:
    entry = {"via": "proxy", "upstream": upstream, "env": "API_BASE", **cred}
    return loop_yaml(
        agent_cmd("api_agent.py", "API_BASE", "API_KEY"), "false", credentials={"api": entry}
    )


def _policy(tmp_path: Path, repo: Path, entry: str) -> Path:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "workspaces:\n"
        "  client-a:\n"
        f'    repos: ["{repo}"]\n'
        "    secrets:\n"
        f"      - {entry}\n"
        "  client-b:\n"
        '    repos: ["/srv/client-b"]\n'
        "    secrets: [api]\n"
    )
    policy.chmod(0o600)
    return policy


def _refusals(repo: Path) -> list[dict[str, Any]]:
    log = repo / ".git" / "outloop" / "refused.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def servers() -> Any:
    with UpstreamServer() as upstream, UpstreamServer(host="127.0.0.2") as internet:
        yield upstream, internet


def test_a_loop_that_points_the_key_elsewhere_is_refused_before_any_turn(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[UpstreamServer, UpstreamServer],
) -> None:
    upstream, internet = servers
    key = _key()
    repo = make_repo({".outloop/fix.yml": _loop(internet.url + "/v1")})
    policy = _policy(tmp_path, repo, bound("api", upstreams=[upstream.url]))
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    head = git(repo, "rev-parse", "HEAD").strip()
    upstream_line = _line_of(repo / ".outloop/fix.yml", "upstream:")
    # the loop file's line and the key, the policy's line (the `- {name: api, ...}` entry)
    assert f".outloop/fix.yml@{head[:10]}:{upstream_line}:" in done.stderr
    assert "credentials.api.upstream" in done.stderr
    assert f"{policy}:5" in done.stderr
    assert internet.url in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr
    # nothing ran: no agent turn, no run directory, nothing reached either server
    assert not runs_dir(repo).exists()
    assert internet.requests == [] and upstream.requests == []
    [event] = _refusals(repo)
    assert event["event"] == "credential_denied" and event["name"] == "api"
    assert event["outside_binding"] is True and event["policy_at"] == f"{policy}:5"
    assert event["loop_at"].startswith(f".outloop/fix.yml@{head[:10]}:{upstream_line}:")
    assert event["commit"] == head and event["key"] == "credentials.api.upstream"
    assert_no_leak(key, done.stdout, done.stderr, json.dumps(event), where="the refusal")


def test_audit_verify_checks_the_refusals_log_and_sees_an_edit_inside_it(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[UpstreamServer, UpstreamServer],
) -> None:
    upstream, internet = servers
    repo = make_repo({".outloop/fix.yml": _loop(internet.url + "/v1")})
    policy = _policy(tmp_path, repo, bound("api", upstreams=[upstream.url]))
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", _key())
    for _ in range(2):
        assert run_cli(repo, "run", "fix").returncode == 3

    intact = run_cli(repo, "audit", "verify", "--json")
    [report] = [json.loads(line) for line in intact.stdout.splitlines()]
    assert intact.returncode == 0, intact.stderr
    assert report["run"] == "refused" and report["ok"] is True and report["events"] == 2

    # someone hides that the key was ever asked for elsewhere: the chain shows the edit
    log = repo / ".git" / "outloop" / "refused.jsonl"
    lines = log.read_text().splitlines()
    lines[0] = lines[0].replace(internet.url, upstream.url)
    log.write_text("\n".join(lines) + "\n")
    edited = run_cli(repo, "audit", "verify")
    assert edited.returncode == 1
    assert "FAILED refused:" in edited.stdout and f"{log}:" in edited.stdout
    assert "Traceback" not in edited.stderr


def test_control_the_policy_widened_lets_the_key_go_there(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[UpstreamServer, UpstreamServer],
) -> None:
    upstream, internet = servers
    key = _key()
    repo = make_repo({".outloop/fix.yml": _loop(internet.url + "/v1")})
    widened = bound("api", upstreams=[upstream.url, internet.url])
    monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, widened)))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)

    done = run_cli(repo, "run", "fix", "--max-iterations", "1")

    assert done.returncode == 1, done.stderr
    # this is what the refusal above prevented: the key, sent to the other host
    assert [r.headers.get("Authorization") for r in internet.requests] == [f"Bearer {key}"]
    assert [r.path for r in internet.requests] == ["/v1/echo"]
    assert _refusals(repo) == []


def test_a_pull_request_commit_that_names_another_upstream_is_refused(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[UpstreamServer, UpstreamServer],
) -> None:
    upstream, internet = servers
    key = _key()
    repo = make_repo({".outloop/fix.yml": _loop(upstream.url)})
    monkeypatch.setenv(
        "OUTLOOP_POLICY", str(_policy(tmp_path, repo, bound("api", upstreams=[upstream.url])))
    )
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", key)
    # a contributor's branch changes only the upstream; the work tree stays on main
    git(repo, "checkout", "-qb", "pr-42")
    (repo / ".outloop/fix.yml").write_text(_loop(internet.url))
    git(repo, "commit", "-qam", "speed up the API calls")
    pr_head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-")

    attacked = run_cli(repo, "run", "fix", "--from", "pr-42")

    assert attacked.returncode == 3, attacked.stderr
    assert f".outloop/fix.yml@{pr_head[:10]}:" in attacked.stderr
    assert internet.requests == [] and not runs_dir(repo).exists()
    [event] = _refusals(repo)
    assert event["commit"] == pr_head
    # the same loop from main goes where the policy says, and only there
    done = run_cli(repo, "run", "fix", "--max-iterations", "1")
    assert done.returncode == 1, done.stderr
    assert [r.headers.get("Authorization") for r in upstream.requests] == [f"Bearer {key}"]
    assert internet.requests == []


def test_a_path_outside_the_bound_prefix_is_refused(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[UpstreamServer, UpstreamServer],
) -> None:
    upstream, _ = servers
    repo = make_repo({".outloop/fix.yml": _loop(upstream.url + "/admin")})
    bound_v1 = bound("api", upstreams=[upstream.url + "/v1"])
    monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, bound_v1)))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_API", _key())

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert "upstreams " + upstream.url + "/v1" in done.stderr
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("credential", "policy_entry", "refused"),
    [
        pytest.param(
            {"via": "helper"},
            "api",
            "`via: helper` hands `api` to the agent raw",
            id="helper-needs-helper-true",
        ),
        pytest.param(
            {"via": "git", "host": "127.0.0.2:8443"},
            bound("api", hosts=["127.0.0.1:8443"]),
            "git host `127.0.0.2:8443` is not where the policy lets `api` go",
            id="git-host",
        ),
        pytest.param(
            {"via": "proxy", "upstream": "https://api.openai.com.example.net", "env": "X_URL"},
            "openai",
            "only its well-known https://api.openai.com",
            id="well-known-lookalike",
        ),
        pytest.param(
            {"via": "proxy", "upstream": "https://crm.example.com", "env": "X_URL"},
            "crm",
            "no `upstreams:` for `crm`",
            id="unbound-name",
        ),
    ],
)
def test_other_ways_out_are_refused_with_the_policy_line(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    credential: dict[str, str],
    policy_entry: str,
    refused: str,
) -> None:
    name = "openai" if "openai" in policy_entry else "crm" if "crm" in policy_entry else "api"
    loop = loop_yaml(agent_cmd("noop_agent.py"), "false", credentials={name: credential})
    repo = make_repo({".outloop/fix.yml": loop})
    policy = _policy(tmp_path, repo, policy_entry)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv(f"OUTLOOP_SECRET_CLIENT_A_{name.upper()}", _key())

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert refused in done.stderr and f"{policy}:5" in done.stderr
    assert "Traceback" not in done.stderr and not runs_dir(repo).exists()
    assert [e["name"] for e in _refusals(repo)] == [name]


def test_a_bare_name_still_reaches_its_well_known_api_so_old_policies_keep_working(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `secrets: [openai]` as every policy before bindings wrote it; the loop narrows the path
    loop = loop_yaml(
        agent_cmd("noop_agent.py"),
        "true",
        credentials={
            "openai": {"via": "proxy", "upstream": "https://api.openai.com/v1", "env": "X_URL"}
        },
    )
    repo = make_repo({".outloop/fix.yml": loop})
    monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, "openai")))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_OPENAI", _key())

    done = run_cli(repo, "run", "fix", "--json")

    # the goal holds at the baseline: the plan (and the grant) went through
    assert done.returncode == 0, done.stderr
    assert _refusals(repo) == []


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


# --- the proxy and the broker check again (defence in depth) ---------------------------


def test_a_broker_refuses_to_serve_a_credential_outside_its_binding() -> None:
    from outloop_cli.credentials.bindings import Binding
    from outloop_cli.errors import CouldNotRun
    from tests.support.credentials import Events, proxy_cred, started_broker

    cred = proxy_cred("api", "http://127.0.0.2:9/v1", env="API_BASE")
    binding = Binding("api", ("http://127.0.0.1:9",), (), False, "policy.yml:5")
    with (
        pytest.raises(CouldNotRun, match=r"policy.yml:5"),
        started_broker({"api": _key()}, [cred], Events(), bindings={"api": binding}),
    ):
        pass


def test_the_proxy_checks_each_request_against_the_binding(
    servers: tuple[UpstreamServer, UpstreamServer],
) -> None:
    from outloop_cli.credentials.bindings import Binding
    from outloop_cli.credentials.routes import ProxyRoute, UpstreamPath
    from tests.support.credentials import Events, proxy_cred, request, started_broker

    upstream, _ = servers
    cred = proxy_cred("api", upstream.url + "/v1", env="API_BASE")
    binding = Binding("api", (upstream.url + "/v1",), (), False, "policy.yml:5")
    route = ProxyRoute.build(cred, "k", binding=binding)
    assert route.within_binding(UpstreamPath("/v1/echo", "/v1/echo"))
    # whatever the path normaliser lets through, the binding is judged on its own
    for decoded in ("/admin", "/v1/../admin", "/v1\\..\\admin", "/v10/x", "/v1/\x00"):
        assert not route.within_binding(UpstreamPath(decoded, decoded)), decoded
    # the same route, built without a policy, is bound to exactly its own upstream
    assert ProxyRoute.build(cred, "k").within_binding(UpstreamPath("/v1/x", "/v1/x"))
    events = Events()
    with started_broker({"api": _key()}, [cred], events, bindings={"api": binding}) as broker:
        assert request(broker.agent_env()["API_BASE"], path="/echo").status == 200
    assert [r.path for r in upstream.requests] == ["/v1/echo"]


def test_the_git_helper_answers_only_for_a_bound_host() -> None:
    from outloop_cli.config.model import CredentialConfig
    from outloop_cli.credentials import broker_wire
    from outloop_cli.credentials.bindings import Binding
    from tests.support.credentials import Events, started_broker

    cred = CredentialConfig(name="forge", via="git", host="127.0.0.2:8443")
    token = _key()

    def ask(bindings: dict[str, Binding] | None) -> dict[str, Any]:
        events = Events()
        with started_broker({"forge": token}, [cred], events, bindings=bindings) as broker:
            env = broker.agent_env()
            return dict(
                broker_wire.ask(
                    env[broker_wire.ENV_SOCKET],
                    {
                        "op": "git",
                        "capability": env[broker_wire.ENV_CAPABILITY],
                        "protocol": "https",
                        "host": "127.0.0.2:8443",
                    },
                )
            )

    # the policy binds the key to another host: the broker does not hand it out
    bound_elsewhere = Binding("forge", (), ("127.0.0.1:8443",), False, "policy.yml:5")
    refused = ask({"forge": bound_elsewhere})
    assert refused == {"ok": False, "reason": "outside_binding"}
    # control: bound to this host, the same question gets the key
    bound_here = Binding("forge", (), ("127.0.0.2:8443",), False, "policy.yml:5")
    granted = ask({"forge": bound_here})
    assert granted["ok"] is True and granted["password"] == token


@pytest.mark.parametrize(
    "origin", ["git@github.com:agency/site.git", "https://github.com/agency/site.git"]
)
def test_a_ci_goal_that_points_the_forge_token_elsewhere_is_refused_before_the_run(
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[UpstreamServer, UpstreamServer],
    origin: str,
) -> None:
    from outloop_cli.engine.plan import RunOptions, plan_loop
    from outloop_cli.git.repo import Repository, discover

    _, internet = servers
    loop = loop_yaml(["true"], "true")
    loop = loop.replace("goal:\n  run: 'true'\n  timeout: 60s\n", "")
    loop += f"goal:\n  ci: {{provider: github, api_url: '{internet.url}/api/v3'}}\n"
    repo = make_repo({".outloop/fix.yml": loop})
    git(repo, "remote", "add", "origin", origin)
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_GITHUB", "ghp_" + secrets.token_hex(16))
    monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, "github")))

    done = run_cli(repo, "run", "fix")

    assert done.returncode == 3, done.stderr
    assert "goal.ci.api_url" in done.stderr and "well-known https://api.github.com" in done.stderr
    assert internet.requests == [] and not runs_dir(repo).exists()
    [event] = _refusals(repo)
    assert (event["name"], event["key"]) == ("github", "goal.ci.api_url")
    # control: with the API in the policy, the plan lets the token go there
    widened = bound("github", upstreams=[internet.url], hosts=["github.com"])
    monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, repo, widened)))
    plan = plan_loop(Repository(discover(repo)), "fix", RunOptions())
    assert plan.config.goal.ci is not None
