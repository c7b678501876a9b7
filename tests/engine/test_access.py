"""The one place a forge token is resolved: real repo, real policy file, real Secret Service."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from outloop_cli.config.loader import load_loop_text
from outloop_cli.credentials.grants import Decision, SecretGrants
from outloop_cli.credentials.store import SecretStore, make_ref
from outloop_cli.engine.access import (
    REFUSED_FOR_PR_COMMAND,
    REFUSED_FOR_RUN,
    RunAccess,
    TokenRefusal,
    resolve_forge_token,
)
from outloop_cli.errors import CouldNotRun
from tests.conftest import RepoFactory
from tests.support import keyring_env
from tests.support.keyring_env import SecretService

secret_service = keyring_env.secret_service
use_secret_service = keyring_env.use_secret_service

REMOTE = "https://github.com/agency/site.git"
API = "https://api.github.com"


def policy_file(tmp_path: Path, workspace: str, repos: str, secret_names: str) -> Path:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f"workspaces:\n  {workspace}:\n    repos: [{repos}]\n    secrets: [{secret_names}]\n"
    )
    policy.chmod(0o600)
    return policy


@pytest.mark.parametrize(
    ("refusal", "message", "hint"),
    [
        (
            REFUSED_FOR_RUN,
            "the CI goal needs the `github` secret: ",
            "store a token or GitHub App as `github` for this repo's workspace",
        ),
        (
            REFUSED_FOR_PR_COMMAND,
            "no `github` secret for this repository: ",
            "store a token or GitHub App with `outloop secrets set github`",
        ),
    ],
    ids=["a run", "outloop pr"],
)
def test_a_refused_token_is_worded_for_whoever_asked(
    make_repo: RepoFactory, tmp_path: Path, refusal: TokenRefusal, message: str, hint: str
) -> None:
    repo = make_repo({"README": "x"})
    policy = policy_file(tmp_path, "acme", "'github.com/acme/*'", "github")
    decisions: list[Decision] = []
    with pytest.raises(CouldNotRun) as raised:
        resolve_forge_token(
            "github",
            repo,
            REMOTE,
            policy,
            refusal=refusal,
            api_url=API,
            on_decision=decisions.append,
        )
    [decision] = decisions
    assert (decision.event, decision.name, decision.via) == ("credential_denied", "github", "git")
    assert raised.value.message == message + decision.reason
    assert raised.value.hint == hint


def test_a_granted_token_comes_from_the_workspace_and_its_decision_is_reported(
    use_secret_service: SecretService, make_repo: RepoFactory, tmp_path: Path
) -> None:
    workspace = f"agency-{secrets.token_hex(3)}"
    token = f"ghp_{secrets.token_hex(16)}"
    SecretStore.open().set(make_ref(workspace, "github"), token)
    repo = make_repo({"README": "x"})
    policy = policy_file(tmp_path, workspace, "'github.com/agency/*'", "github")
    decisions: list[Decision] = []
    found = resolve_forge_token(
        "github",
        repo,
        REMOTE,
        policy,
        refusal=REFUSED_FOR_RUN,
        api_url=API,
        on_decision=decisions.append,
    )
    assert found == token
    assert [d.event for d in decisions] == ["credential_granted"]
    assert token not in repr(decisions)


def test_a_token_the_run_was_granted_is_used_without_asking_the_policy_again(
    tmp_path: Path,
) -> None:
    config = load_loop_text(
        "agent:\n  preset: command\n  command: [x]\ngoal:\n  ci: {}\n", file="fix.yml", name="fix"
    )
    grants = SecretGrants(workspace="acme", match=None, values={"github": "ghp_granted"})
    access = RunAccess(config, grants, [])
    asked: list[Decision] = []
    # no policy file exists at this path: asking it would be refused
    found = access.forge_token("github", tmp_path, REMOTE, tmp_path / "none.yml", asked.append)
    assert (found, asked) == ("ghp_granted", [])
