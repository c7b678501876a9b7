"""Real keyrings for tests: a Secret Service (gnome-keyring) and a plaintext file backend.

``secret_service`` starts, once per test session, a private D-Bus session bus
(``dbus-run-session``) with ``gnome-keyring-daemon --unlock`` on it, its
keyring files in a temp dir. Tests opt in per test with ``use_secret_service``,
which points ``DBUS_SESSION_BUS_ADDRESS`` and keyring at it. Nothing of the
developer's own session is used.

``use_plaintext_keyring`` selects ``keyrings.alt``'s plaintext file backend,
the one outloop must refuse unless told otherwise.

Install the system parts with ``.ci/setup-keyring.sh``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
PLAINTEXT_BACKEND = "keyrings.alt.file.PlaintextKeyring"
_START_TIMEOUT = 20.0


@dataclass(frozen=True)
class SecretService:
    address: str
    data_dir: Path
    pid: int


def _wait_for_secrets_name(address: str, proc: subprocess.Popen[bytes]) -> None:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gnome-keyring-daemon exited with {proc.returncode}")
        try:
            with open_dbus_connection(bus=address) as conn:
                reply = conn.send_and_get_reply(
                    new_method_call(bus, "NameHasOwner", "s", ("org.freedesktop.secrets",))
                )
                if reply.body[0]:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the Secret Service did not appear on the test bus")


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretService]:
    missing = [p for p in ("dbus-run-session", "gnome-keyring-daemon") if not shutil.which(p)]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run `bash .ci/setup-keyring.sh` (apt: dbus, gnome-keyring)"
        )
    root = tmp_path_factory.mktemp("secret-service")
    home, runtime = root / "home", root / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    script = (
        'echo "ADDR=$DBUS_SESSION_BUS_ADDRESS"; '
        "exec gnome-keyring-daemon --foreground --unlock --components=secrets"
    )
    proc = subprocess.Popen(
        ["dbus-run-session", "--", "sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        # --unlock reads the login keyring's password from stdin, up to EOF
        proc.stdin.write(b"test-keyring-password")
        proc.stdin.close()
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("ADDR=") or len(line) <= len("ADDR="):
            raise RuntimeError(f"dbus-run-session gave no bus address: {line!r}")
        address = line[len("ADDR=") :]
        _wait_for_secrets_name(address, proc)
        yield SecretService(address, home / ".local/share/keyrings", proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def use_secret_service(
    secret_service: SecretService, monkeypatch: pytest.MonkeyPatch
) -> SecretService:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service.address)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", SECRET_SERVICE_BACKEND)
    monkeypatch.delenv("OUTLOOP_ALLOW_INSECURE_KEYRING", raising=False)
    return secret_service


@pytest.fixture
def use_plaintext_keyring(monkeypatch: pytest.MonkeyPatch, isolated_user_state: Path) -> Path:
    """The plaintext file backend; returns the file it writes (under the test's XDG_DATA_HOME)."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", PLAINTEXT_BACKEND)
    return Path(os.environ["XDG_DATA_HOME"]) / "python_keyring" / "keyring_pass.cfg"
