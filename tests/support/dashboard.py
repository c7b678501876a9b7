"""Driving `outloop ui` in tests: the real CLI in a subprocess, and requests to it."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.e2e import AGENTS, PY

URL_RE = re.compile(r"^(http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+))$", re.M)


def dashboard_loop(
    gate: Path | None,
    goal_target: int = 3,
    *,
    leak: Path | None = None,
    approve: dict[str, Any] | None = None,
    **limits: Any,
) -> str:
    """A loop whose agent reports cost, tokens and a final message, and whose goal JUnit.

    ``dashboard_agent.py`` takes one step per turn; ``dashboard_goal.py`` has
    ``goal_target`` tests, one more of them passing after each turn.
    """
    command = [PY, str(AGENTS / "dashboard_agent.py")]
    if gate is not None:
        command += ["--gate", str(gate)]
    if leak is not None:
        command += ["--leak", str(leak)]
    data: dict[str, Any] = {
        "description": "dashboard test loop",
        "agent": {
            "preset": "claude",
            "command": command,
            "prompt": "Make the goal pass.",
            "timeout": "150s",
        },
        "goal": {
            "run": f"{PY} check_steps.py {goal_target}",
            "junit": "reports/junit.xml",
            "timeout": "60s",
        },
        "limits": {"max_iterations": 10, "stall": 8, **limits},
    }
    if approve is not None:
        data["approve"] = approve
    if gate is not None:
        data["sandbox"] = {"write": [str(gate)]}
    return yaml.safe_dump(data, sort_keys=False)


def dashboard_files(gate: Path | None, goal_target: int = 3, **kwargs: Any) -> dict[str, str]:
    """The files of a repository with that loop: the goal's script lives in the repository."""
    return {
        ".outloop/fix.yml": dashboard_loop(gate, goal_target, **kwargs),
        "check_steps.py": (AGENTS / "dashboard_goal.py").read_text(),
        "README.md": "A repository the dashboard tests run loops in.\n",
    }


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Dashboard:
    process: subprocess.Popen[str]
    url: str
    port: int
    token: str
    cookie: str | None = None
    csrf: str | None = None
    seen: list[bytes] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        cookie: bool = True,
        timeout: float = 30,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = {"Host": f"127.0.0.1:{self.port}"}
        if cookie and self.cookie:
            sent["Cookie"] = self.cookie
        sent.update(headers or {})
        try:
            conn.putrequest(method, path, skip_host=True)
            for key, value in sent.items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self.seen.append(data)
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def log_in(self) -> None:
        """Open the printed URL as a browser would: keep the cookie, then fetch the CSRF token."""
        reply = self.request("GET", f"/?token={self.token}", cookie=False)
        assert reply.status == 303, reply.text
        cookie = reply.headers["set-cookie"]
        self.cookie = cookie.split(";", 1)[0]
        self.csrf = self.request("GET", "/api/session").json()["csrf"]

    def post(self, path: str, payload: dict[str, Any], **headers: str) -> Reply:
        sent = {
            "Origin": self.origin,
            "Content-Type": "application/json",
            "X-Outloop-CSRF": self.csrf or "",
        }
        sent.update(headers)
        return self.request("POST", path, headers=sent, body=json.dumps(payload).encode())

    def read_events(self, *, until: str, timeout: float = 30) -> bytes:
        """The SSE stream's bytes, read until ``until`` shows up in them (or the deadline)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.putrequest("GET", "/api/events", skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{self.port}")
        conn.putheader("Cookie", self.cookie or "")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 200
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while until.encode() not in data:
                assert time.monotonic() < deadline, f"{until!r} never came: {data[-2000:]!r}"
                chunk = response.fp.read1(65536)  # type: ignore[union-attr]
                if not chunk:
                    break
                data += chunk
        finally:
            conn.close()
        self.seen.append(data)
        return data


@contextmanager
def running_dashboard(cwd: Path, *args: str) -> Iterator[Dashboard]:
    process = subprocess.Popen(
        [PY, "-m", "outloop_cli", "ui", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = URL_RE.search(line.strip())
        if match is None:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise AssertionError(f"no URL printed: {line!r}\n{err}")
        url, port, token = match.group(1), int(match.group(2)), match.group(3)
        yield Dashboard(process, url, port, token)
    finally:
        if process.poll() is None:
            process.send_signal(2)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(condition: Any, *, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def query(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


__all__ = [
    "PY",
    "Dashboard",
    "dashboard_files",
    "dashboard_loop",
    "running_dashboard",
    "sys",
    "wait_until",
]
