"""Which secrets a run gets: real repo, real policy file, real Secret Service."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials.grants import resolve_run_secrets
from outloop_cli.credentials.masking import secret_forms
from outloop_cli.credentials.store import SecretStore, make_ref
from tests.conftest import RepoFactory, git
from tests.support import keyring_env
from tests.support.keyring_env import SecretService

secret_service = keyring_env.secret_service
use_secret_service = keyring_env.use_secret_service
use_plaintext_keyring = keyring_env.use_plaintext_keyring


def cred(name: str, via: str = "proxy") -> CredentialConfig:
    return CredentialConfig(name=name, via=via, upstream="https://api.example.com", env="X_URL")


def bound(*names: str) -> str:
    """Secrets bound to the test's upstream (a bare name may go to its well-known API only)."""
    entries = ", ".join(f"{{name: {n}, upstreams: ['https://api.example.com']}}" for n in names)
    return f"[{entries}]"


def ws_names() -> tuple[str, str]:
    tag = secrets.token_hex(3)
    return f"client-a-{tag}", f"client-b-{tag}"


def setup(make_repo: RepoFactory, tmp_path: Path, a: str, b: str, remote: str) -> tuple[Path, Path]:
    policy = tmp_path / "policy" / "policy.yml"
    policy.parent.mkdir()
    policy.write_text(
        f"workspaces:\n"
        f"  {a}:\n    repos: ['github.com/agency/{a}-*']\n    secrets: {bound('openai', 'crm')}\n"
        f"  {b}:\n    repos: ['github.com/agency/{b}-*']\n"
        f"    secrets: {bound('openai', 'crm', 'billing')}\n"
    )
    policy.chmod(0o600)
    repo = make_repo({"README": "x"})
    git(repo, "remote", "add", "origin", remote)
    return repo, policy


def assert_no_value(values: list[str], *texts: str) -> None:
    for text in texts:
        for value in values:
            for label, form in secret_forms(value).items():
                assert form.decode() not in text, f"value leaked ({label})"


def test_granted_from_the_keyring_only_for_the_matched_workspace(
    use_secret_service: SecretService, make_repo: RepoFactory, tmp_path: Path
) -> None:
    a, b = ws_names()
    repo, policy = setup(make_repo, tmp_path, a, b, f"git@github.com:agency/{a}-web.git")
    store = SecretStore.open()
    a_openai, b_openai, b_billing = (f"sk-{secrets.token_urlsafe(20)}" for _ in range(3))
    store.set(make_ref(a, "openai"), a_openai)
    store.set(make_ref(b, "openai"), b_openai)
    store.set(make_ref(b, "crm"), f"crm-{secrets.token_hex(8)}")
    store.set(make_ref(b, "billing"), b_billing)

    grants = resolve_run_secrets(
        [cred("openai"), cred("crm"), cred("billing"), cred("openai")],
        repo,
        [f"git@github.com:agency/{a}-web.git"],
        policy_path=policy,
    )
    assert grants.workspace == a
    assert grants.values == {"openai": a_openai}
    by_name = {d.name: d for d in grants.decisions}
    assert list(by_name) == ["openai", "crm", "billing"]
    assert by_name["openai"].granted and by_name["openai"].source == "keyring"
    # client-b's crm exists, but client-a's run asks for client-a/crm, which does not
    assert not by_name["crm"].granted
    assert f"no secret {a}/crm" in by_name["crm"].reason
    assert f"outloop secrets set crm --workspace {a}" in by_name["crm"].reason
    # billing is client-b's only: the policy does not allow it for client-a
    assert not by_name["billing"].granted
    assert "does not allow `billing`" in by_name["billing"].reason
    events = [(d.event, d.audit_fields()) for d in grants.decisions]
    assert events[0] == (
        "credential_granted",
        {
            "name": "openai",
            "workspace": a,
            "reason": f"from the keyring ({a}/openai)",
            "source": "keyring",
            "via": "proxy",
        },
    )
    assert_no_value(
        [a_openai, b_openai, b_billing], repr(grants), str(grants.decisions), json.dumps(events)
    )


def test_no_matching_workspace_denies_everything(
    use_secret_service: SecretService, make_repo: RepoFactory, tmp_path: Path
) -> None:
    a, b = ws_names()
    repo, policy = setup(make_repo, tmp_path, a, b, "https://github.com/someone/else")
    grants = resolve_run_secrets(
        [cred("openai"), cred("github", "git")], repo, ["https://github.com/someone/else"], policy
    )
    assert grants.workspace is None and grants.values == {}
    assert [d.event for d in grants.decisions] == ["credential_denied"] * 2
    assert all("no workspace" in d.reason for d in grants.decisions)
    assert grants.decisions[1].via == "git"


def test_two_matching_workspaces_deny_everything(
    use_secret_service: SecretService, make_repo: RepoFactory, tmp_path: Path
) -> None:
    a, b = ws_names()
    repo, policy = setup(make_repo, tmp_path, a, b, f"https://github.com/agency/{a}-x")
    store = SecretStore.open()
    store.set(make_ref(a, "openai"), "sk-" + secrets.token_hex(12))
    remotes = [f"https://github.com/agency/{a}-x", f"https://github.com/agency/{b}-x"]
    grants = resolve_run_secrets([cred("openai")], repo, remotes, policy)
    assert grants.values == {}
    assert not grants.decisions[0].granted
    assert "2 workspaces" in grants.decisions[0].reason


def test_nothing_requested_reads_no_policy(make_repo: RepoFactory, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("this: [is not a policy")
    grants = resolve_run_secrets([], make_repo({"a": "b"}), [], broken)
    assert grants.decisions == [] and grants.values == {}


def test_refused_keyring_is_a_denial_not_a_crash(
    use_plaintext_keyring: Path, make_repo: RepoFactory, tmp_path: Path
) -> None:
    a, b = ws_names()
    repo, policy = setup(make_repo, tmp_path, a, b, f"https://github.com/agency/{a}-x")
    grants = resolve_run_secrets(
        [cred("openai")], repo, [f"https://github.com/agency/{a}-x"], policy
    )
    assert grants.values == {}
    assert "plaintext" in grants.decisions[0].reason


_DRIVER = """
import hashlib, json, sys
from pathlib import Path
from outloop_cli.credentials.ci_env import scrub_ci_secrets_at_startup
scrub_ci_secrets_at_startup()
from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials.grants import resolve_run_secrets
repo, policy, remote = sys.argv[1:4]
grants = resolve_run_secrets(
    [
        CredentialConfig(name=n, via="proxy", upstream="https://api.example.com", env="X_URL")
        for n in ("openai", "crm")
    ],
    Path(repo), [remote], Path(policy),
)
print(json.dumps({
    "decisions": [dict(event=d.event, **d.audit_fields()) for d in grants.decisions],
    "sha": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in grants.values.items()},
    "masked": grants.masker().mask_text(sys.stdin.read()),
}))
"""


def test_ci_variables_are_granted_first_and_only_for_their_pair(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    import hashlib

    a, b = ws_names()
    remote = f"https://github.com/agency/{a}-x"
    repo, policy = setup(make_repo, tmp_path, a, b, remote)
    value = "ci-" + secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env[f"OUTLOOP_SECRET_{a.upper().replace('-', '_')}_OPENAI"] = value
    # client-b's crm arrives too, but a client-a run must not get it
    other = "other-" + secrets.token_hex(8)
    env[f"OUTLOOP_SECRET_{b.upper().replace('-', '_')}_CRM"] = other
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(repo), str(policy), remote],
        input=f"granted {value} not granted {other}",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["sha"] == {"openai": hashlib.sha256(value.encode()).hexdigest()}
    first, second = out["decisions"]
    assert first["event"] == "credential_granted" and first["source"] == "ci"
    assert first["reason"] == f"from OUTLOOP_SECRET_{a.upper().replace('-', '_')}_OPENAI"
    # no CI value for client-a/crm, and the keyring (fail backend here) is refused
    assert second["event"] == "credential_denied"
    assert "cannot store secrets" in second["reason"]
    # the run's masker covers every CI value, granted or not
    assert out["masked"] == "granted *** not granted ***"
    assert_no_value([value, other], done.stdout, done.stderr)
