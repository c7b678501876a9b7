"""`outloop ui` as a command: the URL it prints, its port, its errors, and Ctrl-C."""

from __future__ import annotations

import http.client
import signal
import socket
from pathlib import Path

from tests.support.dashboard import running_dashboard
from tests.support.e2e import run_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ctrl_c_ends_the_dashboard_cleanly_with_a_page_still_listening(
    finished_repo: Path,
) -> None:
    port = _free_port()
    with running_dashboard(finished_repo, "--port", str(port)) as ui:
        assert ui.port == port
        ui.log_in()
        # a browser tab with its event stream open
        stream = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stream.putrequest("GET", "/api/events", skip_host=True)
        stream.putheader("Host", f"127.0.0.1:{port}")
        stream.putheader("Cookie", ui.cookie or "")
        stream.endheaders()
        response = stream.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        assert response.read1(65536).startswith(b"event: runs")

        ui.process.send_signal(signal.SIGINT)
        assert ui.process.wait(timeout=30) == 0
        assert ui.process.stderr is not None
        stderr = ui.process.stderr.read()
        assert "dashboard stopped" in stderr and "Traceback" not in stderr
        stream.close()
    with socket.socket() as sock:
        # the port is free again
        sock.bind(("127.0.0.1", port))


def test_each_start_gets_its_own_port_and_token(finished_repo: Path) -> None:
    with running_dashboard(finished_repo) as first, running_dashboard(finished_repo) as second:
        assert first.port != second.port and first.token != second.token
        assert len(first.token) >= 40
        first.log_in()
        # one dashboard's session is nothing to the other
        assert (
            second.request("GET", "/api/runs", headers={"Cookie": first.cookie or ""}).status == 403
        )
        assert second.request("GET", f"/?token={first.token}").status == 403


def test_a_port_in_use_and_a_repo_that_is_none_are_errors_with_hints(
    finished_repo: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(finished_repo, "ui", "--port", str(port), timeout=30)
    assert done.returncode == 2, done.stderr
    assert "cannot listen" in done.stderr and "hint" in done.stderr
    done = run_cli(finished_repo, "ui", "--repo", str(tmp_path / "nowhere"), timeout=30)
    assert done.returncode == 2 and "--repo" in done.stderr and "Traceback" not in done.stderr
