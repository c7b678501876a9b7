"""The scripted model server speaks each provider's wire protocol, and its offline recorders see what they must."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import (
    Failure,
    ModelServer,
    ReplaceText,
    RunShell,
    Turn,
    WriteFile,
    offline_prefix,
    script_to_json,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [Turn((WriteFile("a.txt", "hi\n"), RunShell("make test")), "All done.")]


def post(
    server: ModelServer, path: str, body: dict[str, Any], **headers: str
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def sse(raw: bytes) -> Iterator[tuple[str | None, Any]]:
    for block in raw.decode().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            yield name, (data if data == "[DONE]" else json.loads(data))


ANTHROPIC_TOOLS = [
    {"name": n, "input_schema": {"type": "object"}} for n in ("Bash", "Write", "Read", "Edit")
]


def anthropic_body(messages: list[dict[str, Any]], stream: bool = True) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "stream": stream,
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Primary working directory: /work/tree\n"}],
        "tools": ANTHROPIC_TOOLS,
        "messages": messages,
    }


def test_anthropic_stream_plays_the_script_with_claude_tools() -> None:
    with ModelServer(SCRIPT) as server:
        first = [{"role": "user", "content": [{"type": "text", "text": "fix it"}]}]
        status, raw, headers = post(
            server, "/v1/messages", anthropic_body(first), **{"x-api-key": "k1"}
        )
        assert status == 200
        assert headers["content-type"] == "text/event-stream"
        events = list(sse(raw))
        names = [n for n, _ in events]
        assert names[0] == "message_start" and names[-1] == "message_stop"
        start = next(d for n, d in events if n == "content_block_start")
        assert start["content_block"]["name"] == "Write"
        delta = next(d for n, d in events if n == "content_block_delta")
        assert json.loads(delta["delta"]["partial_json"]) == {
            "file_path": "/work/tree/a.txt",
            "content": "hi\n",
        }
        stop = next(d for n, d in events if n == "message_delta")
        assert stop["delta"]["stop_reason"] == "tool_use"
        assert stop["usage"]["output_tokens"] == server.output_tokens
        # a retry of the same request gets the same step
        assert post(server, "/v1/messages", anthropic_body(first))[1].count(b'"Write"') == 1
        result = {
            "type": "tool_result",
            "tool_use_id": start["content_block"]["id"],
            "content": "ok",
        }
        second = [
            *first,
            {"role": "assistant", "content": []},
            {"role": "user", "content": [result]},
        ]
        events = list(sse(post(server, "/v1/messages", anthropic_body(second))[1]))
        start = next(d for n, d in events if n == "content_block_start")
        assert start["content_block"]["name"] == "Bash"
        third = [
            *second,
            {"role": "assistant", "content": []},
            {"role": "user", "content": [result]},
        ]
        status, raw, _ = post(server, "/v1/messages", anthropic_body(third, stream=False))
        message = json.loads(raw)
        assert message["content"] == [{"type": "text", "text": "All done."}]
        assert message["stop_reason"] == "end_turn"
    assert "k1" in server.credentials
    assert server.turns_started == 1


def test_anthropic_edit_reads_the_file_first() -> None:
    with ModelServer([Turn((ReplaceText("a.py", "x = 1", "x = 2"),))]) as server:
        first = [{"role": "user", "content": "fix it"}]
        message = json.loads(post(server, "/v1/messages", anthropic_body(first, stream=False))[1])
        assert message["content"][0]["name"] == "Read"
        result = {"type": "tool_result", "tool_use_id": "t", "content": "x = 1"}
        second = [*first, {"role": "user", "content": [result]}]
        message = json.loads(post(server, "/v1/messages", anthropic_body(second, stream=False))[1])
        assert message["content"][0]["input"] == {
            "file_path": "/work/tree/a.py",
            "old_string": "x = 1",
            "new_string": "x = 2",
        }


def responses_body(
    tools: list[dict[str, Any]], extra_input: list[dict[str, Any]] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "model": "gpt-test",
        "stream": True,
        "tools": tools,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix"}]},
            *extra_input,
        ],
    }


def completed_output(raw: bytes) -> list[dict[str, Any]]:
    events = list(sse(raw))
    assert events[0][0] == "response.created"
    done = events[-1][1]
    assert done["type"] == "response.completed"
    assert done["response"]["usage"]["input_tokens"] > 0
    return list(done["response"]["output"])


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ([{"type": "function", "name": "exec_command"}], ("function_call", "exec_command")),
        ([{"type": "function", "name": "shell"}], ("function_call", "shell")),
        ([{"type": "custom", "name": "apply_patch"}], ("custom_tool_call", "apply_patch")),
    ],
)
def test_responses_answer_with_the_offered_codex_tool(
    tools: list[dict[str, Any]], expected: tuple[str, str]
) -> None:
    with ModelServer([Turn((WriteFile("a.txt", "hi\n"),))]) as server:
        output = completed_output(
            post(server, "/v1/responses", responses_body(tools), authorization="Bearer k2")[1]
        )
    assert (output[0]["type"], output[0]["name"]) == expected
    if expected[1] == "apply_patch":
        assert output[0]["input"].startswith("*** Begin Patch\n*** Add File: a.txt\n+hi\n")
    assert server.credentials == {"k2"}


def test_responses_find_the_exec_tool_in_additional_tools() -> None:
    nested = {
        "type": "additional_tools",
        "role": "developer",
        "tools": [
            {
                "type": "namespace",
                "name": "functions",
                "tools": [{"type": "custom", "name": "exec"}],
            }
        ],
    }
    with ModelServer([Turn((RunShell("echo hi > a.txt"),))]) as server:
        output = completed_output(post(server, "/v1/responses", responses_body([], [nested]))[1])
    assert output[0]["type"] == "custom_tool_call"
    assert "tools.exec_command" in output[0]["input"]
    assert "echo hi > a.txt" in output[0]["input"]


def test_chat_completions_stream_aider_search_replace_blocks() -> None:
    body = {
        "model": "gpt-4.1",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Use SEARCH/REPLACE blocks."},
            {"role": "user", "content": "fix calc.py"},
        ],
    }
    with ModelServer([Turn((ReplaceText("calc.py", "a - b", "a + b"),), "Fixed.")]) as server:
        events = list(sse(post(server, "/v1/chat/completions", body)[1]))
    assert events[-1][1] == "[DONE]"
    text = "".join(c["delta"].get("content") or "" for _, d in events[:-1] for c in d["choices"])
    assert "calc.py\n```\n<<<<<<< SEARCH\na - b\n=======\na + b\n>>>>>>> REPLACE\n```" in text
    assert text.endswith("Fixed.")
    assert events[-2][1]["usage"]["prompt_tokens"] == server.input_tokens


def test_gemini_stream_calls_its_tools_and_side_requests_get_schema_json() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "fix"}]}],
        "tools": [
            {"functionDeclarations": [{"name": "write_file"}, {"name": "run_shell_command"}]}
        ],
    }
    side = {
        "contents": [{"role": "user", "parts": [{"text": "route"}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {
                "type": "OBJECT",
                "properties": {"reasoning": {"type": "STRING"}, "score": {"type": "INTEGER"}},
                "required": ["reasoning", "score"],
            },
        },
    }
    with ModelServer(SCRIPT) as server:
        path = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
        events = list(sse(post(server, path, body, **{"x-goog-api-key": "k3"})[1]))
        call = events[0][1]["candidates"][0]["content"]["parts"][0]["functionCall"]
        assert call == {"name": "write_file", "args": {"file_path": "a.txt", "content": "hi\n"}}
        _status, raw, _ = post(server, "/v1beta/models/gemini-x:generateContent", side)
        answer = json.loads(json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"])
        assert set(answer) == {"reasoning", "score"} and isinstance(answer["score"], int)
    main = [r for r in server.requests if r.main]
    assert len(main) == 1 and main[0].credential == "k3"


def test_wrong_keys_and_scripted_failures_get_the_providers_errors() -> None:
    with ModelServer(SCRIPT, expected_key="real") as server:
        status, raw, _ = post(
            server,
            "/v1/messages",
            anthropic_body([{"role": "user", "content": "x"}]),
            **{"x-api-key": "outloop-proxy"},
        )
        assert status == 401
        assert json.loads(raw)["error"]["type"] == "authentication_error"
    with ModelServer(SCRIPT, failure=Failure(429, "rate_limit", retry_after=7)) as server:
        status, raw, headers = post(server, "/v1/responses", responses_body([]))
        assert status == 429
        assert headers["retry-after"] == "7"
        assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
        status, raw, _ = post(server, "/v1beta/models/g:generateContent", {"contents": []})
        assert (status, json.loads(raw)["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")


def test_offline_recorders_catch_lookups_and_connections(tmp_path: Path) -> None:
    """Not vacuous: a program that phones home inside the namespace is seen doing it."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps(script_to_json(SCRIPT)))
    record = tmp_path / "record.json"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    phone_home = (
        "import socket\n"
        "try: socket.getaddrinfo('telemetry.example.com', 443)\n"
        "except OSError: pass\n"
        "for addr in [('203.0.113.7', 8443), ('169.254.169.254', 80)]:\n"
        "    try: socket.create_connection(addr, timeout=1).close()\n"
        "    except OSError: pass\n"
        "socket.create_connection(('127.0.0.1', 18766), timeout=1).close()\n"
    )
    done = subprocess.run(
        [
            *offline_prefix(str(resolv)),
            sys.executable,
            "-m",
            "tests.fakes.model_server",
            "--port",
            "18766",
            "--dns",
            "--watch-lo",
            "--script",
            str(script),
            "--record",
            str(record),
            "--",
            sys.executable,
            "-c",
            phone_home,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(record.read_text())
    assert seen["exit_code"] == 0
    assert "telemetry.example.com" in seen["dns"]
    assert "203.0.113.7:8443/tcp" in seen["connections"]
    assert "169.254.169.254:80/tcp" in seen["connections"]
    # loopback, where the model server lives, is not an escape
    assert not any(c.startswith("127.") for c in seen["connections"])
