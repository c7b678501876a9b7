"""OpenTelemetry export of real `outloop run`s, received by a real OTLP/HTTP receiver on 127.0.0.1.

The receiver decodes each request with the official protobuf messages, so what
is checked is what a collector (Jaeger, Tempo, Honeycomb, Datadog's agent) would
see: one trace per run, spans linked parent to child, the attributes, the
status, and not one byte of a secret, a prompt or an output.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RepoFactory, git
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import assert_no_leak, bound, canary
from tests.support.e2e import (
    PY,
    agent_cmd,
    counter_goal,
    loop_yaml,
    only_run,
    run_cli,
    runs_dir,
    shared_dir,
    wait_for,
)

PROMPT_MARKER = "PROMPT-WORDS-" + "7d1c"
GOAL_MARKER = "GOAL-OUTPUT-" + "93ab"
OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
)


@pytest.fixture(autouse=True)
def no_otel_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _goal(target: int) -> str:
    # the marker is in the goal's output only, not in its command line (the goal's label)
    code = (
        "import pathlib,sys; p=pathlib.Path('counter.txt'); "
        f"v=int(p.read_text()) if p.exists() else 0; print('{GOAL_MARKER[::-1]}'[::-1], v); "
        f"sys.exit(0 if v>={target} else 1)"
    )
    return f'{PY} -c "{code}"'


def _claude_loop(upstream: str, target: int = 2, **overrides: Any) -> str:
    """Claude Code's preset on a scripted CLI, its key granted through the proxy."""
    return loop_yaml(
        agent_cmd("otel_agent.py"),
        _goal(target),
        agent={
            "preset": "claude",
            "command": agent_cmd("otel_agent.py"),
            "prompt": f"Bump the counter. {PROMPT_MARKER}",
            "timeout": "60s",
        },
        credentials={"anthropic": {"via": "proxy", "upstream": upstream}},
        **overrides,
    )


def _grant(tmp_path: Path, repo: Path, upstream: str, monkeypatch: pytest.MonkeyPatch) -> str:
    key = canary()
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f'workspaces:\n  client-a:\n    repos: ["{repo}"]\n'
        f"    secrets: [{bound('anthropic', upstreams=[upstream])}]\n"
    )
    policy.chmod(0o600)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    monkeypatch.setenv("OUTLOOP_SECRET_CLIENT_A_ANTHROPIC", key)
    return key


def _by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return sorted(
        (s for s in spans if s.parent_span_id == parent.span_id), key=lambda s: s.start_ns
    )


def _run_files(repo: Path) -> list[bytes]:
    return [p.read_bytes() for p in runs_dir(repo).rglob("*") if p.is_file()]


def test_a_converging_run_is_one_trace_with_a_span_per_iteration_and_its_steps(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector_key = "collector-" + secrets.token_hex(16)
    with UpstreamServer() as upstream, OtlpReceiver() as otlp:
        repo = make_repo({".outloop/fix.yml": _claude_loop(upstream.url, target=2)})
        key = _grant(tmp_path, repo, upstream.url, monkeypatch)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-honeycomb-team={collector_key}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "agency-loops")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=nightly")

        done = run_cli(repo, "run", "fix")

        requests = otlp.requests
        spans = otlp.spans
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    assert requests and {r.path for r in requests} == {"/v1/traces"}
    assert {r.headers.get("content-type") for r in requests} == {"application/x-protobuf"}
    # the collector's key goes where it is meant to: in the header, on every request
    assert {r.headers.get("x-honeycomb-team") for r in requests} == {collector_key}

    assert len({s.trace_id for s in spans}) == 1
    (root,) = _by_name(spans, "outloop.run")
    assert root.parent_span_id == ""
    assert root.resource["service.name"] == "agency-loops"
    assert root.resource["deployment.environment.name"] == "nightly"
    assert root.attributes["outloop.run.id"] == record["run_id"]
    assert root.attributes["outloop.loop.name"] == "fix"
    assert root.attributes["outloop.workspace"] == "client-a"
    assert root.attributes["outloop.run.stop_reason"] == "goal_met"
    assert root.attributes["outloop.run.exit_code"] == 0
    assert root.attributes["outloop.goal.met"] is True
    assert root.attributes["outloop.run.iterations"] == 2
    assert root.attributes["outloop.cost.usd"] == pytest.approx(0.025)
    assert root.attributes["outloop.run.usage.input_tokens"] == 1000 + 1001
    assert root.attributes["outloop.run.usage.output_tokens"] == 200 + 201
    assert root.status_code == 1  # OK

    iterations = _children(spans, root)
    assert [s.name for s in iterations] == ["outloop.iteration"] * 3
    assert [s.attributes["outloop.iteration"] for s in iterations] == [0, 1, 2]
    assert [s.attributes["outloop.goal.verdict"] for s in iterations] == ["not_met"] * 2 + ["met"]
    baseline, first, second = iterations
    assert [s.name for s in _children(spans, baseline)] == ["outloop.goal_check"]
    for it, n in ((first, 1), (second, 2)):
        steps = _children(spans, it)
        assert [s.name for s in steps] == [
            "outloop.agent_turn",
            "outloop.goal_check",
            "outloop.commit",
        ]
        agent, goal, commit = steps
        sha = record["iterations"][n]["commit"]
        assert it.attributes["outloop.commit.sha"] == sha
        assert commit.attributes["outloop.commit.sha"] == sha
        assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert agent.attributes["gen_ai.usage.input_tokens"] == 1000 + n - 1
        assert agent.attributes["gen_ai.usage.output_tokens"] == 200 + n - 1
        assert agent.attributes["outloop.cost.usd"] == pytest.approx(0.0125)
        assert goal.attributes["outloop.goal.exit_code"] == (0 if n == 2 else 1)
        for child in steps:
            assert it.start_ns <= child.start_ns <= child.end_ns <= it.end_ns
    assert root.start_ns <= baseline.start_ns and second.end_ns <= root.end_ns

    raw = b"".join(r.raw for r in requests)
    bodies = b"".join(r.body for r in requests)
    assert_no_leak(key, raw, where="what the collector received")
    assert_no_leak(collector_key, bodies, where="the spans")
    for words in (PROMPT_MARKER, GOAL_MARKER, "counter 0 -> 1"):
        assert words.encode() not in raw
    # the agent never saw the collector's key, and outloop wrote it nowhere
    env_seen = git(repo, "show", f"{record['branch']}:otel-env.txt")
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in env_seen
    assert_no_leak(
        collector_key, done.stdout, done.stderr, *_run_files(repo), where="outloop's output"
    )


def test_the_traces_endpoint_wins_and_is_used_as_is(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
    unused.close()
    with OtlpReceiver() as otlp:
        repo = make_repo(
            {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", dead)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.url + "/ingest/otlp")

        done = run_cli(repo, "run", "fix")

        requests = otlp.requests
    assert done.returncode == 0, done.stderr
    assert requests and {r.path for r in requests} == {"/ingest/otlp"}
    (root,) = _by_name([s for r in requests for s in r.spans], "outloop.run")
    assert root.resource["service.name"] == "outloop"
    assert "outloop.workspace" not in root.attributes  # this repo is in no workspace


def test_a_failing_agent_marks_its_spans_and_the_run_as_errors(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OtlpReceiver() as otlp:
        repo = make_repo({".outloop/fix.yml": loop_yaml(agent_cmd("failing_agent.py"), "false")})
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)

        done = run_cli(repo, "run", "fix")

        spans = otlp.spans
    assert done.returncode == 1, done.stderr
    assert only_run(repo)["stop_reason"] == "agent_error"
    (root,) = _by_name(spans, "outloop.run")
    assert (root.status_code, root.status_message) == (2, "agent_error")
    assert root.attributes["outloop.run.stop_reason"] == "agent_error"
    record = only_run(repo)
    baseline, *turns = _children(spans, root)
    assert [s.attributes["outloop.iteration"] for s in turns] == [
        it["n"] for it in record["iterations"] if it["n"] > 0
    ]
    assert baseline.status_code == 0  # the goal not being met yet is no error
    for iteration in turns:
        assert iteration.status_code == 2
        (agent,) = _by_name(_children(spans, iteration), "outloop.agent_turn")
        assert agent.status_code == 2
        assert agent.attributes["error.type"] == "exit"
        assert agent.attributes["outloop.agent.exit_code"] == 1


def _interrupted_run(repo: Path, marker: Path) -> tuple[int, str]:
    """`outloop run fix`, Ctrl-C once its agent has written ``marker``: the exit code, stderr."""
    runner = subprocess.Popen(
        [PY, "-m", "outloop_cli", "run", "fix"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(marker)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=60)
    return runner.returncode, err


def test_ctrl_c_still_sends_the_run_with_its_interrupted_turn(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "started"
    with OtlpReceiver() as otlp:
        repo = make_repo(
            {
                ".outloop/fix.yml": loop_yaml(
                    agent_cmd("sleepy_agent.py", str(marker)), counter_goal(1), sandbox=sandbox
                )
            }
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
        code, err = _interrupted_run(repo, marker)
        spans = otlp.spans
    assert code == 130, err
    (root,) = _by_name(spans, "outloop.run")
    assert root.attributes["outloop.run.stop_reason"] == "interrupted"
    assert root.status_code == 2
    turn = _children(spans, root)[-1]
    assert turn.attributes["outloop.iteration"] == 1
    assert turn.status_code == 2
    assert _children(spans, turn)[0].name == "outloop.agent_turn"


def test_a_resumed_run_continues_the_trace_of_the_run_it_resumes(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared, sandbox = shared_dir(tmp_path)
    marker = shared / "started"
    loop = loop_yaml(
        agent_cmd("once_sleepy_agent.py", str(marker)), counter_goal(2), sandbox=sandbox
    )
    other_loop = loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))
    with OtlpReceiver() as otlp:
        repo = make_repo({".outloop/fix.yml": loop, ".outloop/other.yml": other_loop})
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
        code, err = _interrupted_run(repo, marker)
        assert code == 130, err
        run_id = only_run(repo)["run_id"]
        resumed = run_cli(repo, "resume", run_id)
        assert resumed.returncode == 0, resumed.stderr
        assert run_cli(repo, "run", "other").returncode == 0
        spans = otlp.spans
    roots = sorted(_by_name(spans, "outloop.run"), key=lambda s: s.start_ns)
    first, second, other = roots
    assert first.attributes["outloop.run.id"] == second.attributes["outloop.run.id"] == run_id
    assert first.attributes["outloop.run.stop_reason"] == "interrupted"
    assert second.attributes["outloop.run.resumed"] is True
    assert second.attributes["outloop.run.stop_reason"] == "goal_met"
    # one trace for the run, both runners' roots in it; another run has a trace of its own
    assert first.trace_id == second.trace_id
    assert first.parent_span_id == second.parent_span_id == ""
    assert other.trace_id != first.trace_id
    assert {s.trace_id for s in spans} == {first.trace_id, other.trace_id}


def test_a_dead_collector_neither_fails_nor_hangs_the_run(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(2))}
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://user:pw-{port}@127.0.0.1:{port}")

    done = run_cli(repo, "run", "fix", timeout=60)

    assert done.returncode == 0, done.stderr
    assert only_run(repo)["stop_reason"] == "goal_met"
    assert (
        f"telemetry: could not send spans to http://127.0.0.1:{port}/v1/traces"
        in done.stdout + done.stderr
    )
    assert "Traceback" not in done.stderr
    # the URL's password is not repeated anywhere
    assert f"pw-{port}" not in done.stdout + done.stderr


def test_a_collector_that_never_answers_does_not_hold_the_run(
    make_repo: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OtlpReceiver(mode="hang") as otlp:
        repo = make_repo(
            {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")

        # the deadline is the receiver's own: it never answers, so only the exporter's
        # timeout can end the wait for it
        done = run_cli(repo, "run", "fix", timeout=60)

        assert otlp.requests, "the exporter never tried"
    assert done.returncode == 0, done.stderr
    assert only_run(repo)["stop_reason"] == "goal_met"
    assert "Traceback" not in done.stderr


_MODULES_AFTER_RUN = """
import json, sys
sys.argv = ["outloop", "run", "fix"]
from outloop_cli.main import entry
try:
    entry()
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(json.dumps({"exit": code, "otel": loaded}), file=sys.stderr)
"""


def _modules_after_run(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [PY, "-c", _MODULES_AFTER_RUN],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return dict(json.loads(done.stderr.strip().splitlines()[-1]))


def test_without_the_variables_opentelemetry_is_never_imported(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )

    without = _modules_after_run(repo, dict(os.environ))

    assert without == {"exit": 0, "otel": []}
    # the control: the same run with an endpoint loads the SDK (so the check above can fail)
    with OtlpReceiver() as otlp:
        with_endpoint = _modules_after_run(
            repo, {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}
        )
    assert with_endpoint["exit"] == 0
    assert "opentelemetry.sdk.trace" in with_endpoint["otel"]


def test_without_the_sdk_an_endpoint_costs_one_warning_and_no_failure(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    # an installation without the [otel] extra: `import opentelemetry` fails
    shadow = tmp_path / "no-otel"
    (shadow / "opentelemetry").mkdir(parents=True)
    (shadow / "opentelemetry" / "__init__.py").write_text("raise ImportError('not installed')\n")
    repo = make_repo(
        {".outloop/fix.yml": loop_yaml(agent_cmd("counter_agent.py"), counter_goal(1))}
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(shadow),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }

    done = subprocess.run(
        [PY, "-m", "outloop_cli", "run", "fix"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert shown.count("pip install 'outloop[otel]'") == 1
    assert "Traceback" not in done.stderr


def test_a_loop_cannot_pass_the_collectors_key_to_its_agent(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector_key = "collector-" + secrets.token_hex(16)
    with UpstreamServer() as upstream, OtlpReceiver() as otlp:
        # the loop file is the repository's: it names the key's variable to pull it in
        loop = _claude_loop(
            upstream.url,
            target=1,
            agent__pass_env=[
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ],
        )
        repo = make_repo({".outloop/fix.yml": loop})
        _grant(tmp_path, repo, upstream.url, monkeypatch)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"api-key={collector_key}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"x-key={collector_key}")
        # the control: an OTEL variable that carries nothing secret does get through
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")

        done = run_cli(repo, "run", "fix")

        requests = otlp.requests
    assert done.returncode == 0, done.stderr
    record = only_run(repo)
    env_seen = git(repo, "show", f"{record['branch']}:otel-env.txt")
    assert "OTEL_EXPORTER_OTLP_COMPRESSION=none" in env_seen
    assert "HEADERS" not in env_seen
    assert_no_leak(collector_key, env_seen, git(repo, "log", "--all", "-p"), *_run_files(repo))
    # the signal's own headers win over the general ones, as the specification says
    assert {r.headers.get("x-key") for r in requests} == {collector_key}
    assert "api-key" not in {k for r in requests for k in r.headers}


def test_a_pushing_run_has_a_push_span_inside_each_iteration(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.git_http_server import GitHttpServer

    token = "tok-" + secrets.token_urlsafe(16)
    with GitHttpServer(tmp_path / "host", token) as host, OtlpReceiver() as otlp:
        host.create("project.git")
        loop = loop_yaml(
            agent_cmd("counter_agent.py"),
            counter_goal(2),
            push=True,
            credentials={"forge": {"via": "git", "host": host.host}},
        )
        repo = make_repo({".outloop/fix.yml": loop})
        git(repo, "remote", "add", "origin", host.url_for("project.git"))
        policy = tmp_path / "policy.yml"
        policy.write_text(
            f'workspaces:\n  me:\n    repos: ["{repo}"]\n'
            f"    secrets: [{bound('forge', hosts=[host.host])}]\n"
        )
        policy.chmod(0o600)
        monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
        monkeypatch.setenv("OUTLOOP_SECRET_ME_FORGE", token)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)

        done = run_cli(repo, "run", "fix")

        spans = otlp.spans
        raw = otlp.raw_bytes()
    assert done.returncode == 0, done.stderr
    (root,) = _by_name(spans, "outloop.run")
    assert root.attributes["outloop.workspace"] == "me"
    _, *turns = _children(spans, root)
    assert len(turns) == 2
    for it in turns:
        steps = _children(spans, it)
        assert [s.name for s in steps] == [
            "outloop.agent_turn",
            "outloop.goal_check",
            "outloop.commit",
            "outloop.push",
        ]
        for child in steps:
            assert it.start_ns <= child.start_ns <= child.end_ns <= it.end_ns
    assert_no_leak(token, raw, where="what the collector received")
