"""A loop's egress rules against the user's policy: narrowed, never widened, refused early."""

from __future__ import annotations

from pathlib import Path

import pytest

from outloop_cli.config.model import LoopConfig, SandboxConfig
from outloop_cli.engine.egress import plan_egress, proxy_env
from outloop_cli.errors import CouldNotRun
from outloop_cli.git.repo import Repository, discover
from outloop_cli.sandbox.ports import SandboxServer
from tests.conftest import RepoFactory
from tests.support.e2e import agent_cmd, loop_yaml, run_cli


def _policy(tmp_path: Path, repo: Path, egress: str) -> Path:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f'workspaces:\n  client-a:\n    repos: ["{repo}"]\n{egress}'
        '  client-b:\n    repos: ["/nowhere/client-b"]\n'
        '    egress: {allow: ["*.example.com:443", "pypi.org:443"]}\n'
    )
    policy.chmod(0o600)
    return policy


def _config(egress: tuple[str, ...], sandbox: str = "bwrap") -> LoopConfig:
    from outloop_cli.config.model import AgentConfig, GoalConfig

    return LoopConfig(
        name="fix",
        path=".outloop/fix.yml",
        agent=AgentConfig(preset="command", command=("true",), prompt="x"),
        goal=GoalConfig(run="true"),
        sandbox=SandboxConfig(mode=sandbox),
        egress=egress,
    )


def test_a_loop_gets_what_it_asks_for_inside_the_policy(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    root = make_repo({"a.txt": "a\n"})
    policy = _policy(
        tmp_path,
        root,
        '    egress:\n      allow: ["*.pythonhosted.org:443", "pypi.org:443"]\n'
        '      reach_private: ["10.20.0.0/16"]\n',
    )
    plan = plan_egress(
        _config(("files.pythonhosted.org:443",)), Repository(discover(root)), policy, contained=True
    )
    assert [str(r) for r in plan.rules.rules] == ["files.pythonhosted.org:443"]
    assert [str(n) for n in plan.rules.reach_private] == ["10.20.0.0/16"]
    assert plan.workspace == "client-a"


@pytest.mark.parametrize(
    ("asked", "says"),
    [
        (("pypi.org:80",), "pypi.org:80"),
        (("*.org:443",), "*.org:443"),
        (("api.example.com:443",), "api.example.com:443"),  # client-b's, not client-a's
    ],
)
def test_a_loop_cannot_widen_its_workspace(
    make_repo: RepoFactory, tmp_path: Path, asked: tuple[str, ...], says: str
) -> None:
    root = make_repo({"a.txt": "a\n"})
    policy = _policy(tmp_path, root, '    egress: {allow: ["pypi.org:443"]}\n')
    with pytest.raises(CouldNotRun) as info:
        plan_egress(_config(asked), Repository(discover(root)), policy, contained=True)
    assert says in info.value.message and "client-a" in info.value.message
    assert "egress.allow" in (info.value.hint or "")


def test_a_repo_in_no_workspace_reaches_nothing(make_repo: RepoFactory, tmp_path: Path) -> None:
    root = make_repo({"a.txt": "a\n"})
    policy = _policy(tmp_path, Path("/somewhere/else"), "")
    with pytest.raises(CouldNotRun, match="no workspace"):
        plan_egress(_config(("pypi.org:443",)), Repository(discover(root)), policy, contained=True)


def test_outside_the_sandbox_the_rules_are_only_a_warning(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    root = make_repo({"a.txt": "a\n"})
    plan = plan_egress(
        _config(("pypi.org:443",), "none"), Repository(discover(root)), None, contained=False
    )
    assert not plan.rules
    assert "enforced only in the sandbox" in plan.notes[0]


def test_proxy_variables_point_at_the_sandbox_port_and_keep_loopback_direct() -> None:
    env = proxy_env(SandboxServer(3128, Path("/x/egress.sock"), lambda: Path("/x/egress.handoff")))
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://127.0.0.1:3128"
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    assert proxy_env(None) == {}


def test_a_refused_rule_stops_the_run_before_the_agent_with_exit_3(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = loop_yaml(agent_cmd("noop_agent.py"), "true", egress=["evil.example.net:443"])
    loop = loop.replace("description:", "sandbox: bwrap\ndescription:", 1)
    root = make_repo({".outloop/fix.yml": loop})
    monkeypatch.setenv("OUTLOOP_POLICY", str(_policy(tmp_path, root, "")))
    done = run_cli(root, "run", "fix", "--json")
    assert done.returncode == 3, done.stderr
    assert "evil.example.net:443" in done.stderr and "does not allow" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("rule", "says"),
    [("pypi.org", "has no port"), ("https://pypi.org:443", "not host:port")],
)
def test_a_bad_rule_is_a_config_error_naming_the_line(
    make_repo: RepoFactory, rule: str, says: str
) -> None:
    root = make_repo(
        {".outloop/fix.yml": loop_yaml(["true"], "true", egress=["pypi.org:443", rule])}
    )
    done = run_cli(root, "validate")
    assert done.returncode == 2, done.stdout + done.stderr
    assert ".outloop/fix.yml:" in done.stderr and "egress[1]:" in done.stderr
    assert says in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr
