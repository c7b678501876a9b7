"""CI secrets: read once, then gone from os.environ, children, and outloop's own /proc environ."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from outloop_cli.credentials.ci_env import env_var_name
from outloop_cli.credentials.masking import secret_forms
from tests.conftest import RepoFactory, git
from tests.support.e2e import counter_goal, loop_yaml, only_run, runs_dir

ROOT = Path(__file__).resolve().parents[2]


def outloop_env(**extra: str) -> dict[str, str]:
    """The test's environment for an outloop process, as if outside GitHub Actions."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    env.update(extra)
    return env


PROBE = """
import hashlib, json, os, subprocess, sys
from outloop_cli.credentials.ci_env import scrub_ci_secrets_at_startup, ci_secret, ci_variable_names
scrub_ci_secrets_at_startup()
child = subprocess.run(["env", "-0"], capture_output=True, env=dict(os.environ)).stdout
value = ci_secret("client-a", "openai") or ""
print(json.dumps({
    "pid": os.getpid(),
    "names": list(ci_variable_names()),
    "sha": hashlib.sha256(value.encode()).hexdigest(),
    "environ_has_prefix": any(k.startswith("OUTLOOP_SECRET_") for k in os.environ),
    "child_env": child.decode(errors="replace"),
}), flush=True)
sys.stdin.readline()
"""


def canary() -> str:
    return "ci/" + secrets.token_urlsafe(24) + "+="


def assert_clean(value: str, data: bytes, where: str) -> None:
    for label, form in secret_forms(value).items():
        assert form not in data, f"secret in {where} ({label})"


@pytest.mark.parametrize(
    ("workspace", "name", "variable"),
    [
        ("client-a", "openai", "OUTLOOP_SECRET_CLIENT_A_OPENAI"),
        ("acme", "crm-api", "OUTLOOP_SECRET_ACME_CRM_API"),
        ("a_b", "c", "OUTLOOP_SECRET_A_B_C"),
    ],
)
def test_variable_names(workspace: str, name: str, variable: str) -> None:
    assert env_var_name(workspace, name) == variable


def test_values_leave_proc_environ_children_and_os_environ() -> None:
    value, other = canary(), canary()
    env = outloop_env()
    env["OUTLOOP_SECRET_CLIENT_A_OPENAI"] = value
    env["OUTLOOP_SECRET_CLIENT_B_CRM"] = other
    env["OUTLOOP_SECRET_EMPTY"] = ""
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        report = json.loads(proc.stdout.readline())
        # same process, re-executed: its pid did not change
        assert report["pid"] == proc.pid
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        fds = {p.name: str(p.readlink()) for p in Path(f"/proc/{proc.pid}/fd").iterdir()}
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
    for secret in (value, other):
        assert_clean(secret, environ, "/proc/<pid>/environ")
        assert_clean(secret, cmdline, "/proc/<pid>/cmdline")
        assert_clean(secret, report["child_env"].encode(), "a child's environment")
    assert b"OUTLOOP_SECRET_" not in environ
    assert "OUTLOOP_SECRET_" not in report["child_env"]
    # the handover pipe was read and closed: no pipe but stdio left to open via /proc/<pid>/fd
    assert [n for n, target in fds.items() if target.startswith("pipe:")] == ["0", "1", "2"]
    assert report["sha"] == hashlib.sha256(value.encode()).hexdigest()
    assert sorted(report["names"]) == [
        "OUTLOOP_SECRET_CLIENT_A_OPENAI",
        "OUTLOOP_SECRET_CLIENT_B_CRM",
    ]
    assert report["environ_has_prefix"] is False


def test_large_values_are_handed_over_and_oversize_refused() -> None:
    # one variable may hold at most 128 KiB (MAX_ARG_STRLEN); several fill more than a pipe
    big = secrets.token_hex(50_000)
    env = outloop_env(OUTLOOP_SECRET_CLIENT_A_OPENAI=big)
    env.update({f"OUTLOOP_SECRET_FILL_{i}": secrets.token_hex(50_000) for i in range(3)})
    done = subprocess.run(
        [sys.executable, "-c", PROBE], input=b"\n", capture_output=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["sha"] == hashlib.sha256(big.encode()).hexdigest()

    # more than the 1 MiB a pipe can be grown to: refused, clearly
    huge = secrets.token_hex(60_000)
    env = outloop_env(OUTLOOP_SECRET_CLIENT_A_OPENAI=huge)
    env.update({f"OUTLOOP_SECRET_FILL_{i}": secrets.token_hex(60_000) for i in range(9)})
    done = subprocess.run(
        [sys.executable, "-m", "outloop_cli", "secrets", "list"],
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 3
    assert b"cannot hand over the OUTLOOP_SECRET_* variables" in done.stderr
    assert b"Traceback" not in done.stderr
    assert huge[:64].encode() not in done.stderr + done.stdout


def test_a_bogus_handover_fd_is_an_error_not_a_crash() -> None:
    env = outloop_env(OUTLOOP_CI_SECRETS_FD="nope")
    done = subprocess.run(
        [sys.executable, "-m", "outloop_cli", "secrets", "list"],
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 3
    assert b"OUTLOOP_CI_SECRETS_FD is not a file descriptor number" in done.stderr


ATTACK_AGENT = r"""
import json, os, pathlib, sys
out = pathlib.Path(sys.argv[1])
loot = {"own_env": dict(os.environ), "parent": {}, "all": {}}
ppid = os.getppid()
for what in ("environ", "cmdline"):
    try:
        loot["parent"][what] = pathlib.Path(f"/proc/{ppid}/{what}").read_bytes().decode("latin-1")
    except OSError as exc:
        loot["parent"][what] = f"error: {exc}"
for proc in pathlib.Path("/proc").iterdir():
    if not proc.name.isdigit():
        continue
    for what in ("environ", "cmdline"):
        try:
            loot["all"][f"{proc.name}/{what}"] = (proc / what).read_bytes().decode("latin-1")
        except OSError:
            pass
loot["outloop_pid"] = ppid
out.write_text(json.dumps(loot))
pathlib.Path("counter.txt").write_text("1")
"""


def test_agent_cannot_find_ci_secrets_anywhere_during_a_real_run(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    value = canary()
    agent = tmp_path / "attack.py"
    agent.write_text(ATTACK_AGENT)
    loot_file = tmp_path / "loot.json"
    loop = loop_yaml(
        [sys.executable, str(agent), str(loot_file)],
        counter_goal(1),
        # unsandboxed on purpose: the agent reads outloop's own /proc/<pid>/environ as
        # same-user code can without a sandbox; the re-exec must have scrubbed it (in the
        # sandbox, outloop's /proc is not even in view: tests/security/test_fs_sandbox.py)
        sandbox="none",
    )
    repo = make_repo({".outloop/fix.yml": loop})
    env = outloop_env(OUTLOOP_SECRET_CLIENT_A_OPENAI=value)
    done = subprocess.run(
        [sys.executable, "-m", "outloop_cli", "run", "fix"],
        cwd=repo,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loot = json.loads(loot_file.read_text())
    # the agent really did read its parent, outloop, and many other processes
    assert "outloop" in loot["parent"]["cmdline"] or "-c" in loot["parent"]["cmdline"]
    assert not loot["parent"]["environ"].startswith("error")
    assert len(loot["all"]) > 4
    assert_clean(value, loot_file.read_bytes(), "what the agent could read")
    assert_clean(value, done.stdout + done.stderr, "outloop's output")
    record = only_run(repo)
    for path in (runs_dir(repo) / str(record["run_id"])).rglob("*"):
        if path.is_file():
            assert_clean(value, path.read_bytes(), str(path))
    history = git(repo, "log", "-p", "--all").encode()
    assert_clean(value, history, "the repository's history")


def test_secrets_list_shows_ci_variables_by_policy_pair_never_values(tmp_path: Path) -> None:
    value, stray = canary(), canary()
    policy = tmp_path / "policy.yml"
    policy.write_text("workspaces:\n  client-a: {repos: [github.com/a/*], secrets: [openai]}\n")
    policy.chmod(0o600)
    env = outloop_env(
        OUTLOOP_POLICY=str(policy),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        OUTLOOP_SECRET_CLIENT_A_OPENAI=value,
        OUTLOOP_SECRET_CLIENT_A_OPENAPI=stray,
    )
    done = subprocess.run(
        [sys.executable, "-m", "outloop_cli", "secrets", "list"],
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "OUTLOOP_SECRET_CLIENT_A_OPENAPI\tCI variable, not in the policy",
        "client-a/openai\tfrom CI variable",
    ]
    # the keyring is unusable here (CI): said once, not fatal
    assert b"warning: no usable keyring" in done.stderr
    for secret in (value, stray):
        assert_clean(secret, done.stdout + done.stderr, "secrets list")


def test_github_actions_gets_add_mask_for_every_form_before_any_output() -> None:
    value = canary()
    env = outloop_env(GITHUB_ACTIONS="true", OUTLOOP_SECRET_CLIENT_A_OPENAI=value)
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    done = subprocess.run(
        [sys.executable, "-m", "outloop_cli", "secrets", "list"],
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    masks = [line for line in lines if line.startswith("::add-mask::")]
    # every mask comes first, then the command's own output
    assert lines[: len(masks)] == masks
    assert lines[len(masks) :] == ["OUTLOOP_SECRET_CLIENT_A_OPENAI\tCI variable, not in the policy"]
    masked = {line.removeprefix("::add-mask::") for line in masks}
    for label, form in secret_forms(value).items():
        assert form.decode().replace("%", "%25") in masked, label
    assert_clean(value, done.stderr, "stderr")
