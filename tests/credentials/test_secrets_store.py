"""The secrets store against a real Secret Service and a real plaintext file backend."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from outloop_cli.credentials.masking import secret_forms
from outloop_cli.credentials.store import (
    SERVICE,
    KeyringRefused,
    SecretRef,
    SecretStore,
    make_ref,
)
from outloop_cli.errors import UsageError
from tests.support import keyring_env
from tests.support.keyring_env import PLAINTEXT_BACKEND, SecretService

secret_service = keyring_env.secret_service
use_secret_service = keyring_env.use_secret_service
use_plaintext_keyring = keyring_env.use_plaintext_keyring


def canary() -> str:
    return "sk-canary-" + secrets.token_urlsafe(24)


def workspace() -> str:
    # the Secret Service lives for the whole session: each test its own workspace
    return "ws-" + secrets.token_hex(4)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_not_in(value: str, data: bytes, where: str) -> None:
    for label, form in secret_forms(value).items():
        assert form not in data, f"secret found in {where} ({label})"


def secret_tool(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """libsecret's own client: proves the entry is where other tools look for it."""
    env = {"PATH": os.environ["PATH"], "DBUS_SESSION_BUS_ADDRESS": address}
    return subprocess.run(
        ["secret-tool", *args], capture_output=True, text=True, env=env, timeout=20
    )


def test_secret_service_round_trip(use_secret_service: SecretService) -> None:
    store = SecretStore.open()
    assert store.backend_name == "keyring.backends.SecretService.Keyring"
    ref = make_ref(workspace(), "openai")
    value = canary()
    assert store.get(ref) is None
    store.set(ref, value)
    assert store.get(ref) == value
    # stored where the contract says: service `outloop`, user `<workspace>/<name>`
    found = secret_tool(
        use_secret_service.address, "lookup", "service", SERVICE, "username", str(ref)
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout == value
    assert store.delete(ref) is True
    assert store.get(ref) is None
    assert store.delete(ref) is False


def test_workspaces_keep_separate_values(use_secret_service: SecretService) -> None:
    store = SecretStore.open()
    a, b = make_ref(workspace(), "openai"), make_ref(workspace(), "openai")
    store.set(a, "value-for-a-" + secrets.token_hex(8))
    store.set(b, "value-for-b-" + secrets.token_hex(8))
    assert store.get(a) != store.get(b)
    assert (store.get(a) or "").startswith("value-for-a-")


def test_keyring_files_hold_no_value_in_any_encoding(use_secret_service: SecretService) -> None:
    store = SecretStore.open()
    value = canary()
    store.set(make_ref(workspace(), "crm"), value)
    files = files_under(use_secret_service.data_dir)
    assert files, "gnome-keyring wrote no files"
    for path in files:
        assert_not_in(value, path.read_bytes(), str(path))
    for path in files_under(store.index_dir):
        assert_not_in(value, path.read_bytes(), str(path))


_WHICH_BACKEND = """
from outloop_cli.credentials.store import backend_id, open_backend
from outloop_cli.errors import OutloopError
try:
    print(backend_id(open_backend()))
except OutloopError as exc:
    print("refused:", exc.message)
"""


def detected_backend() -> str:
    """What a fresh outloop process picks (keyring caches detection per process)."""
    done = subprocess.run(
        [sys.executable, "-c", _WHICH_BACKEND],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_default_detection_picks_the_secret_service(
    use_secret_service: SecretService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # keyrings.alt is installed too: keyring chains both, and outloop must use
    # (and read from) the Secret Service, never the plaintext file behind it
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    assert detected_backend() == "keyring.backends.SecretService.Keyring"


def test_index_lists_names_only_and_is_private(use_secret_service: SecretService) -> None:
    store = SecretStore.open()
    ws = workspace()
    values = {name: canary() for name in ("openai", "crm", "github")}
    for name, value in values.items():
        store.set(make_ref(ws, name), value)
    listed = [(e.workspace, e.name, e.present) for e in store.entries() if e.workspace == ws]
    assert listed == [(ws, "crm", True), (ws, "github", True), (ws, "openai", True)]
    index = store.index_path
    assert stat.S_IMODE(index.stat().st_mode) == 0o600
    data = index.read_bytes()
    for value in values.values():
        assert_not_in(value, data, "the index")
    assert json.loads(data)["secrets"]


def test_entry_removed_behind_outloops_back_shows_missing(
    use_secret_service: SecretService,
) -> None:
    store = SecretStore.open()
    ref = make_ref(workspace(), "openai")
    store.set(ref, canary())
    cleared = secret_tool(
        use_secret_service.address, "clear", "service", SERVICE, "username", str(ref)
    )
    assert cleared.returncode == 0, cleared.stderr
    entry = next(e for e in store.entries() if e.ref == ref)
    assert entry.present is False
    # rm still cleans the index
    assert store.delete(ref) is True
    assert all(e.ref != ref for e in store.entries())


def test_plaintext_backend_is_refused(use_plaintext_keyring: Path) -> None:
    with pytest.raises(KeyringRefused) as info:
        SecretStore.open()
    assert "keyrings.alt.file.PlaintextKeyring" in info.value.message
    assert "plaintext" in info.value.message
    assert "OUTLOOP_ALLOW_INSECURE_KEYRING=1" in (info.value.hint or "")
    assert not use_plaintext_keyring.exists()


def test_plaintext_backend_with_explicit_opt_in(
    use_plaintext_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTLOOP_ALLOW_INSECURE_KEYRING", "1")
    store = SecretStore.open()
    ref = make_ref("client-a", "openai")
    value = canary()
    store.set(ref, value)
    assert store.get(ref) == value
    # the opt-in is not a formality: the value really sits in a file
    assert use_plaintext_keyring.exists()
    assert SecretStore.open(allow_insecure=True).get(ref) == value
    monkeypatch.delenv("OUTLOOP_ALLOW_INSECURE_KEYRING")
    with pytest.raises(KeyringRefused):
        SecretStore.open()


@pytest.mark.parametrize(
    "backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"]
)
def test_unusable_backends_refused_even_with_opt_in(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    with pytest.raises(KeyringRefused) as info:
        SecretStore.open(allow_insecure=True)
    assert backend in info.value.message
    assert "cannot store secrets" in info.value.message


def test_no_secret_service_and_no_config_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # what a headless machine gets: the plaintext file at best, never silently
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    assert detected_backend().startswith("refused: ")


def test_secret_service_backend_without_a_bus_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")
    with pytest.raises(KeyringRefused) as info:
        SecretStore.open()
    assert "cannot be loaded" in info.value.message


def test_keyring_config_file_choosing_plaintext_is_refused(
    monkeypatch: pytest.MonkeyPatch, isolated_user_state: Path
) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text(f"[backend]\ndefault-keyring={PLAINTEXT_BACKEND}\n")
    with pytest.raises(KeyringRefused) as info:
        SecretStore.open()
    assert PLAINTEXT_BACKEND in info.value.message


@pytest.mark.parametrize(
    ("ws", "name"), [("Client-A", "openai"), ("client-a", "open/ai"), ("", "x"), ("a", "-x")]
)
def test_bad_names_are_usage_errors(ws: str, name: str) -> None:
    with pytest.raises(UsageError):
        make_ref(ws, name)


def test_empty_value_refused(use_secret_service: SecretService) -> None:
    with pytest.raises(UsageError):
        SecretStore.open().set(SecretRef(workspace(), "openai"), "")
