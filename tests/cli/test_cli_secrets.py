"""`outloop secrets set|list|rm` through the real CLI, against a real Secret Service."""

from __future__ import annotations

import json
import os
import pty
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outloop_cli.credentials.masking import secret_forms
from outloop_cli.credentials.store import SecretStore, make_ref
from tests.support import keyring_env
from tests.support.keyring_env import SecretService

secret_service = keyring_env.secret_service
use_secret_service = keyring_env.use_secret_service
use_plaintext_keyring = keyring_env.use_plaintext_keyring

ROOT = Path(__file__).resolve().parents[2]


def outloop(*args: str, stdin: bytes | None = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "outloop_cli", *args],
        input=stdin,
        capture_output=True,
        env=dict(os.environ),
        cwd=ROOT,
        timeout=60,
    )


def canary() -> str:
    return f"sk/{secrets.token_urlsafe(20)}+"


def ws() -> str:
    return "ws-" + secrets.token_hex(4)


def assert_clean(value: str, *outputs: bytes) -> None:
    for output in outputs:
        for label, form in secret_forms(value).items():
            assert form not in output, f"value in output ({label})"


def test_set_from_stdin_list_and_rm(use_secret_service: SecretService) -> None:
    w, value = ws(), canary()
    done = outloop("secrets", "set", "openai", "--workspace", w, stdin=value.encode() + b"\n")
    assert done.returncode == 0, done.stderr
    assert f"stored {w}/openai".encode() in done.stderr
    # the trailing newline of `echo` is not part of the key
    assert SecretStore.open().get(make_ref(w, "openai")) == value

    listed = outloop("secrets", "list", "--workspace", w)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.decode().splitlines() == [f"{w}/openai\tkeyring"]
    as_json = outloop("secrets", "list", "--json", "-w", w)
    entry = json.loads(as_json.stdout)
    assert (entry["workspace"], entry["name"], entry["source"], entry["present"]) == (
        w,
        "openai",
        "keyring",
        True,
    )

    removed = outloop("secrets", "rm", "openai", "--workspace", w)
    assert removed.returncode == 0, removed.stderr
    assert SecretStore.open().get(make_ref(w, "openai")) is None
    again = outloop("secrets", "rm", "openai", "--workspace", w)
    assert again.returncode == 2
    assert b"no secret" in again.stderr and b"Traceback" not in again.stderr
    assert_clean(value, done.stdout, done.stderr, listed.stdout, listed.stderr, as_json.stdout)


def test_crlf_and_multiline_values(use_secret_service: SecretService) -> None:
    w = ws()
    pem = "-----BEGIN KEY-----\n" + secrets.token_hex(20) + "\n-----END KEY-----"
    assert outloop("secrets", "set", "pem", "-w", w, stdin=pem.encode() + b"\n").returncode == 0
    assert SecretStore.open().get(make_ref(w, "pem")) == pem
    value = canary()
    assert outloop("secrets", "set", "x", "-w", w, stdin=value.encode() + b"\r\n").returncode == 0
    assert SecretStore.open().get(make_ref(w, "x")) == value


@pytest.mark.parametrize("stdin", [b"", b"\n"])
def test_empty_value_refused(use_secret_service: SecretService, stdin: bytes) -> None:
    w = ws()
    done = outloop("secrets", "set", "openai", "--workspace", w, stdin=stdin)
    assert done.returncode == 2
    assert b"empty" in done.stderr and b"Traceback" not in done.stderr
    assert SecretStore.open().get(make_ref(w, "openai")) is None


def test_value_on_the_command_line_is_refused_without_echoing_it(
    use_secret_service: SecretService,
) -> None:
    w, value = ws(), canary()
    done = outloop("secrets", "set", "openai", value, "--workspace", w)
    assert done.returncode == 2
    assert b"never taken from the command line" in done.stderr
    assert_clean(value, done.stdout, done.stderr)
    assert SecretStore.open().get(make_ref(w, "openai")) is None


@pytest.mark.parametrize(
    ("name", "workspace"), [("OpenAI", "client-a"), ("openai", "client/a"), ("a b", "x")]
)
def test_bad_names(use_secret_service: SecretService, name: str, workspace: str) -> None:
    done = outloop("secrets", "set", name, "--workspace", workspace, stdin=b"value-123")
    assert done.returncode == 2
    assert b"hint: use lowercase letters" in done.stderr


def test_hidden_prompt_on_a_terminal(use_secret_service: SecretService) -> None:
    w, value = ws(), canary()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with the pty as its controlling terminal
        try:
            os.chdir(ROOT)
            os.execve(
                sys.executable,
                [sys.executable, "-m", "outloop_cli", "secrets", "set", "openai", "-w", w],
                dict(os.environ),
            )
        finally:
            os._exit(127)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                seen += chunk

    read_until(b"(input hidden): ")
    assert f"Value for {w}/openai (input hidden): ".encode() in seen
    os.write(fd, value.encode() + b"\n")
    read_until(b"stored ")
    read_until(b"\n", timeout=10)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    # not echoed back to the terminal
    assert_clean(value, seen)
    assert SecretStore.open().get(make_ref(w, "openai")) == value


def test_plaintext_backend_refused_then_opted_in(use_plaintext_keyring: Path) -> None:
    value = canary()
    done = outloop("secrets", "set", "openai", "-w", "client-a", stdin=value.encode())
    assert done.returncode == 3
    err = done.stderr.decode()
    assert "refusing the keyring backend keyrings.alt.file.PlaintextKeyring" in err
    assert "--allow-insecure-keyring" in err and "Traceback" not in err
    assert not use_plaintext_keyring.exists()

    allowed = outloop(
        "secrets",
        "set",
        "openai",
        "-w",
        "client-a",
        "--allow-insecure-keyring",
        stdin=value.encode(),
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "keyrings.alt.file.PlaintextKeyring" in allowed.stderr.decode()
    # listing without the opt-in still shows the names, and says the keyring was refused
    listed = outloop("secrets", "list")
    assert listed.returncode == 0
    assert listed.stdout.decode().splitlines() == ["client-a/openai\tkeyring"]
    assert b"warning: refusing the keyring backend" in listed.stderr
    assert_clean(value, done.stderr, allowed.stdout, allowed.stderr, listed.stdout, listed.stderr)


def test_policy_note_when_no_run_would_get_the_secret(use_secret_service: SecretService) -> None:
    w = ws()
    policy = Path(os.environ["XDG_CONFIG_HOME"]) / "outloop" / "policy.yml"
    policy.parent.mkdir(parents=True)
    policy.write_text(f"workspaces:\n  {w}:\n    repos: [github.com/a/b]\n    secrets: [crm]\n")
    policy.chmod(0o600)
    done = outloop("secrets", "set", "openai", "-w", w, stdin=b"value-123456")
    assert done.returncode == 0
    assert b"does not list `openai`" in done.stderr
    done = outloop("secrets", "set", "crm", "-w", w, stdin=b"value-123456")
    assert b"note:" not in done.stderr
    done = outloop("secrets", "set", "crm", "-w", "other-ws", stdin=b"value-123456")
    assert b"has no workspace `other-ws`" in done.stderr


def test_concurrent_sets_keep_every_name(use_secret_service: SecretService) -> None:
    w = ws()
    names = [f"key{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "outloop_cli", "secrets", "set", name, "-w", w],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        for name in names
    ]
    for proc in procs:
        proc.communicate(f"value-{secrets.token_hex(8)}".encode(), timeout=60)
        assert proc.returncode == 0
    listed = outloop("secrets", "list", "-w", w).stdout.decode().splitlines()
    assert listed == [f"{w}/{name}\tkeyring" for name in names]
