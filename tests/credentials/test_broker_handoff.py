"""The broker's handoff sockets: one per sandbox start, where no sandbox can see them."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from outloop_cli.errors import CouldNotRun
from outloop_cli.sandbox.ports import ensure_handoff_home, handoff_home
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import Events, canary, proxy_cred, started_broker


def test_each_start_gets_a_fresh_socket_outside_the_brokers_directory() -> None:
    with UpstreamServer() as upstream:
        cred = proxy_cred("api", upstream.url, env="API_BASE_URL")
        with started_broker({"api": canary()}, [cred], Events()) as broker:
            server = broker.proxy_endpoint
            assert server is not None
            first, second = server.for_one_start(), server.for_one_start()
            # the broker's directory is bound into the agent's sandbox for git's helper
            shown = broker.socket_path.parent
            for port in (first, second):
                assert port.handoff.is_socket()
                assert shown not in port.handoff.parents
                assert stat.S_IMODE(port.handoff.parent.stat().st_mode) == 0o700
                assert stat.S_IMODE(port.handoff.stat().st_mode) == 0o600
            assert first.handoff.parent == second.handoff.parent
            # nobody can name the next one in advance
            assert first.handoff != second.handoff
            assert len(first.handoff.name) == 12
            # one directory for every run's, which every view hides (bwrap.hide)
            assert first.handoff.parent == handoff_home()
        # gone with the proxy (the directory stays, for other runs)
        assert not first.handoff.exists() and not second.handoff.exists()


def test_a_start_after_the_broker_stopped_is_refused_with_a_message() -> None:
    with UpstreamServer() as upstream:
        cred = proxy_cred("api", upstream.url, env="API_BASE_URL")
        with started_broker({"api": canary()}, [cred], Events()) as broker:
            server = broker.proxy_endpoint
            assert server is not None
        with pytest.raises(CouldNotRun, match="access proxy has stopped"):
            server.for_one_start()


def test_egress_handoff_sockets_are_fresh_and_private() -> None:
    from outloop_cli.sandbox.egress import EgressService
    from outloop_cli.sandbox.egress_rules import EgressRules

    # a short path, as the run's (engine/egress.py): a socket's path has ~100 bytes
    directory = Path(tempfile.mkdtemp(prefix="outloop-egress-"))
    service = EgressService.start(EgressRules((), ()), directory, lambda event: None)
    try:
        first, second = service.open_handoff(), service.open_handoff()
        assert first != second and first.parent == second.parent == handoff_home()
        assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    finally:
        service.close()
        shutil.rmtree(directory)
    assert not first.exists() and not second.exists()
    with pytest.raises(CouldNotRun, match="egress proxy has stopped"):
        service.open_handoff()


def test_a_handoff_directory_that_is_not_this_users_alone_is_refused(
    tmp_path: Path,
) -> None:
    """Under /tmp anyone can make the name first: it must be ours, 0700, no link."""
    parent = str(tmp_path)
    made = ensure_handoff_home(parent)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    made.chmod(0o755)
    with pytest.raises(CouldNotRun, match="alone"):
        ensure_handoff_home(parent)
    made.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    made.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CouldNotRun, match="not a directory"):
        ensure_handoff_home(parent)


def test_a_name_taken_under_the_shared_temp_dir_sends_the_sockets_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user can make the name first under a shared /tmp; that must not stop every
    run of ours: the user's own state directory serves instead, and is hidden too."""
    from outloop_cli import paths
    from outloop_cli.sandbox.ports import homes_to_hide

    runtime = Path(tempfile.mkdtemp(prefix="ol-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    try:
        taken = handoff_home()
        taken.symlink_to(tmp_path)
        home = ensure_handoff_home()
        assert home == paths.state_home() / "h"
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert home in homes_to_hide()
    finally:
        shutil.rmtree(runtime)
