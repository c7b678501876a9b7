"""The real agent CLIs, driven by `outloop run`, offline, against the scripted model server.

Each CLI is installed at a pinned version by ``.ci/install-agents.sh`` (CI runs
it first; locally run it once). Every test runs the whole loop inside a fresh
network namespace with only loopback up, where a DNS catch-all on
127.0.0.1:53 records every name anything tried to resolve: the model server
is the only thing the agent can reach, and a lookup of any other host fails
the test.

Until the access proxy is wired into the engine, the loop points the agent's
base-URL variable straight at the model server in ``agent.env``, and the agent
holds the sentinel key. With the proxy, drop ``agent.env`` (the preset's
default credential takes over), store the key in the keyring fixture, and
flip ``EXPECTED_KEY`` to it: the server then checks that it got the real key
and the assertions below check the sentinel never reached it.
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

from outloop_cli.agents.headless import PROXY_SENTINEL
from outloop_cli.agents.pricing import BUILTIN_PRICES, Price, prices_path
from tests.conftest import RepoFactory, git
from tests.e2e import PY, only_run
from tests.fakes.model_server import (
    CallTool,
    ReplaceText,
    Turn,
    offline_prefix,
    script_to_json,
)

ROOT = Path(__file__).resolve().parent.parent
# read at import, before the autouse fixture moves HOME to a temp dir
AGENTS_BIN = Path(
    os.environ.get("OUTLOOP_AGENTS_BIN")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "outloop-ci/agents/bin"
)
PORT = 18765
URL = f"http://127.0.0.1:{PORT}"
EXPECTED_KEY = PROXY_SENTINEL

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

CASES: dict[str, dict[str, Any]] = {
    "claude": {"env": {"ANTHROPIC_BASE_URL": URL}},
    # a model with a known price, overridden by the user's prices.yml
    "codex": {"env": {"OPENAI_BASE_URL": f"{URL}/v1"}, "model": "gpt-5-codex"},
    # Codex's own default model: its tools come through the JavaScript `exec` tool
    "codex-default-model": {"preset": "codex", "env": {"OPENAI_BASE_URL": f"{URL}/v1"}},
    "aider": {"env": {"OPENAI_BASE_URL": f"{URL}/v1"}, "model": "openai/gpt-4.1"},
    "gemini": {"env": {"GOOGLE_GEMINI_BASE_URL": URL}, "model": "gemini-2.5-flash"},
}
USER_CODEX_PRICE = Price(2.0, 20.0)


def agents_bin() -> Path:
    if not AGENTS_BIN.is_dir():
        pytest.fail(
            f"the agent CLIs are not installed in {AGENTS_BIN}: run `bash .ci/install-agents.sh` "
            "(or set OUTLOOP_AGENTS_BIN)"
        )
    return AGENTS_BIN


def loop_file(name: str, **limits: Any) -> str:
    case = CASES[name]
    agent: dict[str, Any] = {
        "preset": case.get("preset", name),
        "prompt": "Make the tests in test_calc.py pass. Do not edit the tests.",
        "timeout": "120s",
        "env": case["env"],
    }
    if "model" in case:
        agent["model"] = case["model"]
    data = {
        "description": f"fix calc with {name}",
        "agent": agent,
        "goal": {"run": f"{PY} -m pytest -q -p no:cacheprovider test_calc.py", "timeout": "60s"},
        "limits": {"max_iterations": 4, "stall": 3, **limits},
    }
    return yaml.safe_dump(data, sort_keys=False)


def run_offline(
    repo: Path,
    tmp_path: Path,
    *outloop_args: str,
    expected_key: str = EXPECTED_KEY,
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


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_real_cli_fixes_the_code_offline(case: str, make_repo: RepoFactory, tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("util-linux `unshare` is needed to prove the agents stay offline")
    preset = CASES[case].get("preset", case)
    prices = prices_path()
    prices.parent.mkdir(parents=True, exist_ok=True)
    prices.write_text(
        f"models:\n  gpt-5-codex: {{input: {USER_CODEX_PRICE.input}, output: {USER_CODEX_PRICE.output}}}\n"
    )
    repo = make_repo(
        {"calc.py": CALC, "test_calc.py": TEST_CALC, ".outloop/fix.yml": loop_file(case)}
    )

    done, seen = run_offline(repo, tmp_path, "fix", "--json")

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    record = only_run(repo)
    assert record["stop_reason"] == "goal_met", record.get("stop_detail")
    agent_turns = [it["agent"] for it in record["iterations"] if it["n"] > 0]
    assert len(agent_turns) == 2, record
    assert git(repo, "show", f"{record['branch']}:calc.py") == CALC.replace("-", "+")
    # offline: nothing was looked up, everything went to the model server
    assert seen["dns"] == [], f"{preset} tried to resolve {seen['dns']}"
    assert seen["connections"] == [], f"{preset} tried to reach {seen['connections']}"
    assert seen["turns_started"] == 2
    main = [r for r in seen["requests"] if r["main"]]
    assert main, seen["requests"]
    # the key the "provider" got, and only that key
    assert {r["credential"] for r in seen["requests"]} == {EXPECTED_KEY}
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
        assert agent_turns[-1]["final_message"] == "Fixed: add now adds."
    if case == "codex":
        for t in agent_turns:
            expected = USER_CODEX_PRICE.cost(t["input_tokens"], t["output_tokens"])
            assert t["cost_usd"] == pytest.approx(expected)
    if preset == "codex":
        assert agent_turns[-1]["final_message"] == "Fixed: add now adds."
    if preset == "gemini":
        assert agent_turns[-1]["final_message"] == "Fixed: add now adds."
        price = BUILTIN_PRICES["gemini-2.5-flash"]
        for t in agent_turns:
            assert t["cost_usd"] == pytest.approx(price.cost(t["input_tokens"], t["output_tokens"]))


# How each CLI is told not to spend minutes retrying a refused key.
NO_RETRY = {"claude": {"CLAUDE_CODE_MAX_RETRIES": "0"}}


def failing_repo(make_repo: RepoFactory, case: str, timeout: str | None = None) -> Path:
    """A loop that stops at the first failed turn, with the CLI told not to retry long."""
    saved = CASES[case]["env"]
    CASES[case]["env"] = {**saved, **NO_RETRY.get(case, {})}
    try:
        loop = loop_file(case, max_agent_errors=1)
        if timeout:
            loop = loop.replace("timeout: 120s", f"timeout: {timeout}")
    finally:
        CASES[case]["env"] = saved
    return make_repo({"calc.py": CALC, "test_calc.py": TEST_CALC, ".outloop/fix.yml": loop})


def agent_error(repo: Path, done: subprocess.CompletedProcess[str], seen: dict[str, Any]) -> Any:
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    record = only_run(repo)
    assert record["stop_reason"] == "agent_error", record.get("stop_detail")
    assert seen["requests"], "the agent never reached the server"
    assert seen["dns"] == [] and seen["connections"] == []
    return record["iterations"][1]["agent"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["claude", "codex", "aider", "gemini"])
def test_real_cli_refused_key_is_an_auth_error(
    case: str, make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = failing_repo(make_repo, case)
    done, seen = run_offline(repo, tmp_path, "fix", expected_key="sk-the-real-key")
    turn = agent_error(repo, done, seen)
    assert turn["error"] == "auth", turn
    assert turn["final_message"], "the agent's own words on what failed"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["claude", "codex"])
def test_real_cli_rate_limited_is_its_own_error(
    case: str, make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = failing_repo(make_repo, case)
    done, seen = run_offline(repo, tmp_path, "fix", fail="429:rate_limit")
    turn = agent_error(repo, done, seen)
    assert turn["error"] == "rate_limit", turn


@pytest.mark.slow
def test_real_claude_denied_tool_is_a_permission_error(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # WebFetch is not on the preset's allow-list: Claude Code denies it in -p mode
    fetch = CallTool("WebFetch", {"url": "https://example.com/", "prompt": "read it"})
    repo = failing_repo(make_repo, "claude")
    done, seen = run_offline(repo, tmp_path, "fix", script_turns=[Turn((fetch,), "Blocked.")])
    turn = agent_error(repo, done, seen)
    assert turn["error"] == "permission", turn
    assert turn["final_message"] == "Blocked."


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
    case: str, make_repo: RepoFactory, tmp_path: Path
) -> None:
    limit = BUDGETS[case]
    repo = make_repo(
        {"calc.py": CALC, "test_calc.py": TEST_CALC, ".outloop/fix.yml": loop_file(case, **limit)}
    )

    done, seen = run_offline(repo, tmp_path, "fix")

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


@pytest.mark.slow
def test_real_cli_hung_on_its_provider_is_killed_as_a_timeout(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    repo = failing_repo(make_repo, "claude", timeout="4s")
    done, seen = run_offline(repo, tmp_path, "fix", delay=60)
    turn = agent_error(repo, done, seen)
    assert turn["error"] == "timeout", turn
    assert turn["timed_out"] is True
    assert turn["duration"] < 20
