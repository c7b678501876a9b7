"""Attacks on stored secrets by the agent of a real run (a random canary per test).

Each attack is a real agent script run by ``outloop run``; whatever it finds
is written to a loot file outside the repo, which is then searched for the
canary in plain, base64, hex, URL and JSON forms, as are outloop's output,
the run's files and the repository's history.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from outloop_cli.credentials.masking import secret_forms
from outloop_cli.credentials.store import SecretStore, make_ref
from tests.conftest import RepoFactory, git
from tests.support import keyring_env
from tests.support.e2e import counter_goal, loop_yaml, only_run, run_cli, runs_dir
from tests.support.keyring_env import SecretService

secret_service = keyring_env.secret_service
use_secret_service = keyring_env.use_secret_service

READ_FILES = r"""
import os, pathlib, sys
out = pathlib.Path(sys.argv[1])
loot = bytearray()
for root in sys.argv[2:]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = pathlib.Path(dirpath, name)
            try:
                loot += path.read_bytes()[:1_000_000]
            except OSError:
                pass
out.write_bytes(bytes(loot))
pathlib.Path("counter.txt").write_text("1")
"""

SECRET_TOOL = r"""
import os, pathlib, subprocess, sys
out = pathlib.Path(sys.argv[1])
# the attacker knows exactly where the secret is stored
done = subprocess.run(
    ["secret-tool", "lookup", "service", "outloop", "username", sys.argv[2]],
    capture_output=True,
)
env_keys = sorted(os.environ)
out.write_bytes(done.stdout + b"\n--\n" + done.stderr + b"\n--\n" + " ".join(env_keys).encode())
pathlib.Path("counter.txt").write_text("1")
"""


def assert_clean(value: str, data: bytes, where: str) -> None:
    for label, form in secret_forms(value).items():
        assert form not in data, f"canary found in {where} ({label})"


def run_attack(
    make_repo: RepoFactory, tmp_path: Path, script: str, *args: str
) -> tuple[Path, bytes, Path]:
    agent = tmp_path / "attack.py"
    agent.write_text(script)
    loot = tmp_path / "loot.bin"
    # unsandboxed on purpose: what outloop itself keeps out of reach of same-user code
    # (no value in the index, no bus address in the env); in the sandbox none of these
    # files or sockets is in view at all (tests/security/test_fs_sandbox.py)
    loop = loop_yaml(
        [sys.executable, str(agent), str(loot), *args], counter_goal(1), sandbox="none"
    )
    repo = make_repo({".outloop/attack.yml": loop})
    done = run_cli(repo, "run", "attack")
    assert done.returncode == 0, done.stderr
    assert loot.exists(), "the attack did not run"
    return repo, (done.stdout + done.stderr).encode(), loot


def assert_no_sink_has(value: str, repo: Path, output: bytes, loot: Path) -> None:
    assert_clean(value, loot.read_bytes(), "the agent's loot")
    assert_clean(value, output, "outloop's output")
    run_dir = runs_dir(repo) / str(only_run(repo)["run_id"])
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert_clean(value, path.read_bytes(), str(path))
    assert_clean(value, git(repo, "log", "-p", "--all").encode(), "history")


def test_reading_the_keyring_files_index_and_policy_finds_nothing(
    use_secret_service: SecretService, make_repo: RepoFactory, tmp_path: Path
) -> None:
    value = "sk-canary-" + secrets.token_urlsafe(24)
    store = SecretStore.open()
    store.set(make_ref("client-a", "openai"), value)
    policy = Path(os.environ["XDG_CONFIG_HOME"]) / "outloop" / "policy.yml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("workspaces:\n  client-a: {repos: [github.com/a/*], secrets: [openai]}\n")
    repo, output, loot = run_attack(
        make_repo,
        tmp_path,
        READ_FILES,
        str(use_secret_service.data_dir),
        str(store.index_dir),
        str(policy.parent),
        os.environ["HOME"],
    )
    # the attack read real files: the index names the secret, the policy was there
    assert b"client-a" in loot.read_bytes() and b"openai" in loot.read_bytes()
    assert_no_sink_has(value, repo, output, loot)


def test_asking_the_secret_service_from_the_agent_env_fails(
    use_secret_service: SecretService, make_repo: RepoFactory, tmp_path: Path
) -> None:
    # The agent's env has no DBUS_SESSION_BUS_ADDRESS (not on the allow-list). Same-user
    # code that finds the bus socket by itself is not stopped by this: that takes
    # `sandbox: bwrap` (no bus socket inside the sandbox).
    value = "sk-canary-" + secrets.token_urlsafe(24)
    SecretStore.open().set(make_ref("client-a", "openai"), value)
    repo, output, loot = run_attack(make_repo, tmp_path, SECRET_TOOL, "client-a/openai")
    data = loot.read_bytes()
    assert b"DBUS_SESSION_BUS_ADDRESS" not in data
    assert_no_sink_has(value, repo, output, loot)
