"""The agent's environment: an allow-list, never inherited whole, never a secret."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import pytest

from outloop_cli.process.environment import DEFAULT_ALLOWED, build_env, refused_pass_env
from outloop_cli.process.spawn import run_captured
from tests.conftest import RepoFactory
from tests.support.e2e import counter_goal, loop_yaml, only_run, run_cli

CANARY_NAMES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "DB_PASSWORD",
    "MY_SECRET",
    "SSH_AUTH_SOCK",
    "DBUS_SESSION_BUS_ADDRESS",
    "OUTLOOP_SECRET_CLIENT_A_OPENAI",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def hostile_source(canary: str) -> dict[str, str]:
    source = {name: f"{canary}-{name}" for name in CANARY_NAMES}
    source.update(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": "/home/me",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "xterm",
            "RANDOM_TOOL_SETTING": "x",
            "LOG_FORMAT": "json",
        }
    )
    return source


def test_only_allowed_names_get_through() -> None:
    canary = secrets.token_hex(16)
    env = build_env(source=hostile_source(canary))
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/me",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm",
    }


def test_pass_env_cannot_pull_credentials_out() -> None:
    canary = secrets.token_hex(16)
    asked = ["LOG_FORMAT", *CANARY_NAMES]
    env = build_env(pass_env=asked, source=hostile_source(canary))
    assert env["LOG_FORMAT"] == "json"
    assert not any(canary in value for value in env.values())
    assert set(refused_pass_env(asked)) == set(CANARY_NAMES)


def test_outloop_secret_variables_never_pass_by_any_route() -> None:
    canary = secrets.token_hex(16)
    env = build_env(
        pass_env=["OUTLOOP_SECRET_X"],
        extra=[("OUTLOOP_SECRET_Y", canary)],
        outloop_vars={"OUTLOOP_SECRET_Z": canary, "OUTLOOP_RUN": "r1"},
        source={"OUTLOOP_SECRET_X": canary, "PATH": "/bin"},
    )
    assert env == {"PATH": "/bin", "OUTLOOP_RUN": "r1"}


def test_a_value_carrying_a_granted_secret_is_dropped() -> None:
    canary = secrets.token_hex(16)
    env = build_env(
        extra=[("API_BASE", f"https://u:{canary}@api.example.com"), ("LEVEL", "info")],
        source={"PATH": "/bin"},
        secret_values=[canary, ""],
    )
    assert env == {"PATH": "/bin", "LEVEL": "info"}


def test_fallback_path() -> None:
    assert build_env(source={})["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_a_real_child_sees_exactly_the_built_environment(tmp_path: Path) -> None:
    canary = secrets.token_hex(16)
    source = hostile_source(canary)
    source["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env = build_env(source=source, extra=[("LOOP_VAR", "1")], outloop_vars={"OUTLOOP_RUN": "r"})
    done = run_captured(["env", "-0"], cwd=tmp_path, env=env)
    seen = dict(
        item.split("=", 1) for item in done.stdout.decode().split("\0") if item and "=" in item
    )
    assert seen == env
    assert canary not in done.stdout.decode()


AGENT = """
import json, os, pathlib, sys
pathlib.Path(sys.argv[1]).write_text(json.dumps(dict(os.environ)))
pathlib.Path("counter.txt").write_text("1")
"""


def test_agent_of_a_real_run_gets_the_allow_list_only(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-" + secrets.token_hex(16)
    for name in CANARY_NAMES:
        monkeypatch.setenv(name, canary)
    agent = tmp_path / "dump_env.py"
    agent.write_text(AGENT)
    # the default sandbox shows the agent this one directory of the host, to write to
    out = tmp_path / "out"
    out.mkdir()
    dump = out / "agent-env.json"
    loop = loop_yaml(
        [sys.executable, str(agent), str(dump)],
        counter_goal(1),
        # the repo's loop file asks for the user's keys by name: it must not get them
        agent__pass_env=["OPENAI_API_KEY", "GITHUB_TOKEN", "LANG"],
        agent__env={"LOG_LEVEL": "info"},
        sandbox={"write": [str(out)]},
    )
    repo = make_repo({".outloop/fix.yml": loop})
    done = run_cli(repo, "run", "fix")
    assert done.returncode == 0, done.stderr
    assert only_run(repo)["stop_reason"] == "goal_met"
    env = json.loads(dump.read_text())
    assert canary not in dump.read_text()
    allowed = set(DEFAULT_ALLOWED) | {
        "LOG_LEVEL",
        "OUTLOOP_RUN",
        "OUTLOOP_LOOP",
        "OUTLOOP_ITERATION",
        "OUTLOOP_WORKDIR",
        "OUTLOOP_PROMPT_FILE",
        # the event that started the run, as a JSON file (triggers/event.py)
        "OUTLOOP_EVENT_FILE",
        # bubblewrap's --chdir sets it to the worktree, as a shell's cd would
        "PWD",
    }
    extra = {k for k in env if k not in allowed and not k.startswith("LC_")}
    assert extra == set(), extra
    assert env.get("PWD", only_run(repo)["worktree"]) == only_run(repo)["worktree"]
    assert env["LOG_LEVEL"] == "info"
