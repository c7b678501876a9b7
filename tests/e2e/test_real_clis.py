"""The real agent CLIs, driven by `outloop run`, offline, through the access proxy,
against the scripted model server.

Each CLI is installed at a pinned version by ``.ci/install-agents.sh`` (CI runs
it first; locally run it once). Every test runs the whole loop inside a fresh
network namespace with only loopback up, where every address routes to ``lo``:
a packet socket records any connection attempt to another address and a DNS
catch-all every name looked up, so the model server is the only thing the
agent can reach and anything else fails the test.

The key is real as far as outloop can tell: a fresh canary granted by the
policy and handed to outloop as a CI secret (``OUTLOOP_SECRET_CI_<NAME>``).
The loop overrides only the upstream of its preset's default credential, to
point at the model server; the agent gets the proxy's URL and the sentinel
key, and the server refuses any key but the canary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from outloop_cli.agents.headless import HeadlessAgent
from outloop_cli.agents.pricing import BUILTIN_PRICES, Price, prices_path
from outloop_cli.agents.registry import backend_class, default_credentials
from outloop_cli.credentials.proxy import SENTINEL_KEY
from tests.conftest import RepoFactory, git
from tests.fakes.model_server import (
    CallTool,
    ReplaceText,
    RunShell,
    Turn,
    offline_prefix,
    script_to_json,
)
from tests.support.credentials import assert_no_leak, canary
from tests.support.e2e import PY, branch_log, only_run, runs_dir

ROOT = Path(__file__).resolve().parents[2]
# read at import, before the autouse fixture moves HOME to a temp dir
AGENTS_BIN = Path(
    os.environ.get("OUTLOOP_AGENTS_BIN")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "outloop-ci/agents/bin"
)
PORT = 18765
URL = f"http://127.0.0.1:{PORT}"
WORKSPACE = "ci"

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = (
    "from calc import add\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_add_zero():\n    assert add(0, 4) == 4\n"
)
# Two turns: a wrong fix the goal rejects, then the right one.
SCRIPT = [
    Turn((ReplaceText("calc.py", "return a - b", "return a * b"),), "Changed - to *."),
    Turn((ReplaceText("calc.py", "return a * b", "return a + b"),), "Fixed: add now adds."),
]

# Claude Code also dumps the environment it gives its Bash tool, to show what the agent held.
ENV_DUMP = Turn((RunShell("env | sort > agent-env.txt"), *SCRIPT[0].actions), SCRIPT[0].final)

CASES: dict[str, dict[str, Any]] = {
    "claude": {"script": [ENV_DUMP, SCRIPT[1]]},
    # a model with a known price, overridden by the user's prices.yml
    "codex": {"model": "gpt-5-codex"},
    # Codex's own default model: its tools come through the JavaScript `exec` tool
    "codex-default-model": {"preset": "codex"},
    "aider": {"model": "openai/gpt-4.1"},
    "gemini": {"model": "gemini-2.5-flash"},
}
USER_CODEX_PRICE = Price(2.0, 20.0)


def agents_bin() -> Path:
    if not AGENTS_BIN.is_dir():
        pytest.fail(
            f"the agent CLIs are not installed in {AGENTS_BIN}: run `bash .ci/install-agents.sh` "
            "(or set OUTLOOP_AGENTS_BIN)"
        )
    return AGENTS_BIN


def preset_of(case: str) -> str:
    return str(CASES[case].get("preset", case))


def credential(case: str) -> dict[str, dict[str, str]]:
    """The preset's default credential, with its upstream moved to the model server."""
    (default,) = default_credentials(preset_of(case))
    suffix = "/v1" if (default.upstream or "").endswith("/v1") else ""
    assert default.env is not None
    return {
        default.name: {
            "via": "proxy",
            "upstream": URL + suffix,
            "env": default.env,
            "header": default.header,
            "scheme": default.scheme,
        }
    }


def loop_file(
    name: str,
    *,
    agent_env: dict[str, str] | None = None,
    timeout: str = "120s",
    sandbox: str = "none",
    **limits: Any,
) -> str:
    case = CASES[name]
    agent: dict[str, Any] = {
        "preset": preset_of(name),
        "prompt": "Make the tests in test_calc.py pass. Do not edit the tests.",
        "timeout": timeout,
    }
    if agent_env:
        agent["env"] = agent_env
    if "model" in case:
        agent["model"] = case["model"]
    data = {
        "description": f"fix calc with {name}",
        "agent": agent,
        "goal": {"run": f"{PY} -m pytest -q -p no:cacheprovider test_calc.py", "timeout": "60s"},
        "limits": {"max_iterations": 4, "stall": 3, **limits},
        "credentials": credential(name),
        "sandbox": sandbox,
    }
    return yaml.safe_dump(data, sort_keys=False)


def grant(repo: Path, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A policy that gives this repo the preset's key, and the key as a CI secret."""
    name = next(iter(credential(case)))
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f'workspaces:\n  {WORKSPACE}:\n    repos: ["{repo}"]\n'
        # the model server stands in for the preset's API: the policy must say the key goes there
        f"    secrets: [{{name: {name}, upstreams: [{json.dumps(URL)}]}}]\n"
    )
    policy.chmod(0o600)
    key = canary()
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv(f"OUTLOOP_SECRET_{WORKSPACE.upper()}_{name.upper()}", key)
    return key


def make_loop_repo(
    make_repo: RepoFactory,
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **loop: Any,
) -> tuple[Path, str]:
    repo = make_repo(
        {"calc.py": CALC, "test_calc.py": TEST_CALC, ".outloop/fix.yml": loop_file(case, **loop)}
    )
    return repo, grant(repo, case, tmp_path, monkeypatch)


def run_offline(
    repo: Path,
    tmp_path: Path,
    *outloop_args: str,
    expected_key: str,
    script_turns: list[Turn] = SCRIPT,
    fail: str | None = None,
    delay: float = 0.0,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`outloop run` next to the model server, in a loopback-only network namespace."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps(script_to_json(script_turns)))
    record = tmp_path / "record.json"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    inner = [
        PY, "-m", "tests.fakes.model_server", "--port", str(PORT), "--dns", "--watch-lo",
        "--script", str(script), "--record", str(record), "--expected-key", expected_key,
        *(["--fail", fail] if fail else []),
        *(["--delay", str(delay)] if delay else []),
        "--", PY, "-m", "outloop_cli", "run", *outloop_args,
    ]  # fmt: skip
    env = dict(os.environ)
    env["PATH"] = f"{agents_bin()}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [*offline_prefix(str(resolv)), *inner],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert record.exists(), f"the driver did not finish:\n{done.stdout}\n{done.stderr}"
    return done, json.loads(record.read_text())


def every_output(repo: Path) -> list[str]:
    """Everything the run left: records, logs, the agents' own state, and every commit."""
    sinks = [
        path.read_bytes().decode("utf-8", "replace")
        for path in runs_dir(repo).rglob("*")
        if path.is_file()
    ]
    sinks.append(git(repo, "log", "--all", "-p", "--format=%B"))
    return sinks


def audit_events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    text = (runs_dir(repo) / run_id / "audit.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
@pytest.mark.parametrize("case", list(CASES))
def test_real_cli_fixes_the_code_offline_through_the_proxy(
    case: str,
    sandbox: str,
    make_repo: RepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each real CLI, with its own tools, edits, runs the tests and converges: unsandboxed,
    and in the sandbox, where the proxy is its only way out (relayed over a Unix socket)."""
    if shutil.which("unshare") is None:
        pytest.fail("util-linux `unshare` is needed to prove the agents stay offline")
    preset = preset_of(case)
    prices = prices_path()
    prices.parent.mkdir(parents=True, exist_ok=True)
    prices.write_text(
        f"models:\n  gpt-5-codex: {{input: {USER_CODEX_PRICE.input}, output: {USER_CODEX_PRICE.output}}}\n"
    )
    repo, key = make_loop_repo(make_repo, case, tmp_path, monkeypatch, sandbox=sandbox)

    done, seen = run_offline(
        repo,
        tmp_path,
        "fix",
        "--json",
        expected_key=key,
        script_turns=CASES[case].get("script", SCRIPT),
    )

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met", record.get("stop_detail")
    agent_turns = [it["agent"] for it in record["iterations"] if it["n"] > 0]
    assert len(agent_turns) == 2, record
    assert git(repo, "show", f"{record['branch']}:calc.py") == CALC.replace("-", "+")
    # offline: nothing was looked up, nothing else was dialled
    assert seen["dns"] == [], f"{preset} tried to resolve {seen['dns']}"
    assert seen["connections"] == [], f"{preset} tried to reach {seen['connections']}"
    assert seen["turns_started"] == 2
    # the provider got the real key on every request (never the sentinel), through the proxy
    assert {r["credential"] for r in seen["requests"]} == {key}
    proxied = [e for e in audit_events(repo, record["run_id"]) if e["event"] == "proxy_request"]
    assert len(proxied) == len(seen["requests"])
    # ... and the agent never held it: not in its environment, logs, state, commits or reports
    assert_no_leak(key, done.stdout, done.stderr, *every_output(repo), where="the run's outputs")
    agent_cls = backend_class(preset)
    assert isinstance(agent_cls, type) and issubclass(agent_cls, HeadlessAgent)
    if case == "claude":
        held = git(repo, "show", f"{record['branch']}:agent-env.txt")
        assert f"{agent_cls.key_env}={SENTINEL_KEY}\n" in held
        assert f"{agent_cls.credential.env}=http://127.0.0.1:" in held
    # usage came from the agent's own report, every turn
    for turn in agent_turns:
        assert turn["error"] is None, turn
        assert turn["turns"] and turn["turns"] >= 2, turn
        assert turn["input_tokens"] and turn["input_tokens"] > 0, turn
        assert turn["output_tokens"] and turn["output_tokens"] > 0, turn
    parsed_in = sum(t["input_tokens"] for t in agent_turns)
    parsed_out = sum(t["output_tokens"] for t in agent_turns)
    served_in, served_out = seen["reported_usage"]
    if preset == "aider":
        # aider counts tokens itself; its cost comes from litellm's price for gpt-4.1
        assert all(t["cost_usd"] and t["cost_usd"] > 0 for t in agent_turns)
    else:
        assert (parsed_in, parsed_out) == (served_in, served_out)
    if preset == "claude":
        assert all(t["cost_usd"] and t["cost_usd"] > 0 for t in agent_turns)
    if case == "codex":
        for t in agent_turns:
            expected = USER_CODEX_PRICE.cost(t["input_tokens"], t["output_tokens"])
            assert t["cost_usd"] == pytest.approx(expected)
    if preset == "gemini":
        price = BUILTIN_PRICES["gemini-2.5-flash"]
        for t in agent_turns:
            assert t["cost_usd"] == pytest.approx(price.cost(t["input_tokens"], t["output_tokens"]))
    if preset != "aider":
        assert agent_turns[-1]["final_message"] == "Fixed: add now adds."
    # each iteration's commit carries its usage
    for commit, turn in zip(
        branch_log(repo, record["branch"], record["base_commit"]), agent_turns, strict=True
    ):
        assert f"Outloop-Tokens: {turn['input_tokens'] + turn['output_tokens']}" in commit["body"]
        if turn["cost_usd"] is not None:
            assert f"Outloop-Cost-USD: {turn['cost_usd']:.4f}" in commit["body"]


# How each CLI is told not to spend minutes retrying a refused key.
NO_RETRY = {"claude": {"CLAUDE_CODE_MAX_RETRIES": "0"}}


def failing_loop(
    make_repo: RepoFactory,
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    timeout: str = "120s",
) -> tuple[Path, str]:
    """A loop that stops at the first failed turn, with the CLI told not to retry long."""
    return make_loop_repo(
        make_repo, case, tmp_path, monkeypatch,
        agent_env=NO_RETRY.get(case), timeout=timeout, max_agent_errors=1,
    )  # fmt: skip


def agent_error(
    repo: Path, key: str, done: subprocess.CompletedProcess[str], seen: dict[str, Any]
) -> Any:
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    record = only_run(repo)
    assert record["stop_reason"] == "agent_error", record.get("stop_detail")
    assert seen["requests"], "the agent never reached the server"
    assert seen["dns"] == [] and seen["connections"] == []
    assert_no_leak(key, done.stdout, done.stderr, *every_output(repo), where="the run's outputs")
    return record["iterations"][1]["agent"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["claude", "codex", "aider", "gemini"])
def test_real_cli_refused_key_is_an_auth_error(
    case: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, key = failing_loop(make_repo, case, tmp_path, monkeypatch)
    # the provider wants another key than the one the policy granted
    done, seen = run_offline(repo, tmp_path, "fix", expected_key="sk-another-key")
    turn = agent_error(repo, key, done, seen)
    assert turn["error"] == "auth", turn
    assert turn["final_message"], "the agent's own words on what failed"
    assert {r["credential"] for r in seen["requests"]} == {key}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["claude", "codex"])
def test_real_cli_rate_limited_is_its_own_error(
    case: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, key = failing_loop(make_repo, case, tmp_path, monkeypatch)
    done, seen = run_offline(repo, tmp_path, "fix", expected_key=key, fail="429:rate_limit")
    turn = agent_error(repo, key, done, seen)
    assert turn["error"] == "rate_limit", turn


@pytest.mark.slow
def test_real_claude_denied_tool_is_a_permission_error(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WebFetch is not on the preset's allow-list: Claude Code denies it in -p mode
    fetch = CallTool("WebFetch", {"url": "https://example.com/", "prompt": "read it"})
    repo, key = failing_loop(make_repo, "claude", tmp_path, monkeypatch)
    done, seen = run_offline(
        repo, tmp_path, "fix", expected_key=key, script_turns=[Turn((fetch,), "Blocked.")]
    )
    turn = agent_error(repo, key, done, seen)
    assert turn["error"] == "permission", turn
    assert turn["final_message"] == "Blocked."


@pytest.mark.slow
def test_real_cli_hung_on_its_provider_is_killed_as_a_timeout(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, key = failing_loop(make_repo, "claude", tmp_path, monkeypatch, timeout="4s")
    done, seen = run_offline(repo, tmp_path, "fix", expected_key=key, delay=60)
    turn = agent_error(repo, key, done, seen)
    assert turn["error"] == "timeout", turn
    assert turn["timed_out"] is True
    assert turn["duration"] < 20


# A budget each CLI's first turn overshoots: Claude Code and aider report cost
# themselves, Codex and Gemini CLI are priced from the table; tokens for all.
BUDGETS = {
    "claude": {"max_cost_usd": 0.001},
    "aider": {"max_cost_usd": 0.001},
    "codex": {"max_cost_usd": 0.001},
    "gemini": {"max_tokens": 100},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BUDGETS))
def test_real_cli_budget_stops_the_next_turn(
    case: str, make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = BUDGETS[case]
    repo, key = make_loop_repo(make_repo, case, tmp_path, monkeypatch, **limit)

    done, seen = run_offline(repo, tmp_path, "fix", expected_key=key)

    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    record = only_run(repo)
    reason = "max_cost" if "max_cost_usd" in limit else "max_tokens"
    assert record["stop_reason"] == reason, record.get("stop_detail")
    # the one turn that ran is there, overshoot and all; no second turn started
    assert [it["n"] for it in record["iterations"]] == [0, 1]
    assert seen["turns_started"] == 1
    if reason == "max_cost":
        assert record["cost_usd"] > limit["max_cost_usd"]
    else:
        assert record["tokens"] > limit["max_tokens"]
