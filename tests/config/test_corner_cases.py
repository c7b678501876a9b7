"""Config corner cases (issue 12, part 7): each a located exit 2 or what a user expects.

Through the real CLI (`outloop validate`, `outloop run`) on real repositories,
and for the header a credential sends, through the real access proxy to a real
HTTP server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import pytest

from outloop_cli.config.loader import load_loop_text
from outloop_cli.config.model import CredentialConfig
from tests.conftest import RepoFactory, git
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import Events, request, started_broker
from tests.support.e2e import run_cli, runs_dir

COMMAND = "agent:\n  preset: command\n  command: [agent]\n"


def _assert_clean_exit_2(done: object) -> None:
    assert getattr(done, "returncode", None) == 2, getattr(done, "stderr", "")
    stderr = str(getattr(done, "stderr", ""))
    assert "Traceback" not in stderr and "hint:" in stderr, stderr


# --- a password in a URL is refused and never shown -----------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://user:PASSWORD-9f3@api.example.com",
        "https://user:PASSWORD-9f3@api.example.com/v1 with space",
        "http://user:PASSWORD-9f3@evil.example.com",
        "https://:PASSWORD-9f3@api.example.com",
        "ftp://user:PASSWORD-9f3@api.example.com",
        "user:PASSWORD-9f3@api.example.com",
    ],
)
def test_a_password_in_an_upstream_is_refused_and_never_echoed(
    make_repo: RepoFactory, url: str
) -> None:
    loop = (
        COMMAND + 'goal:\n  run: "true"\ncredentials:\n  api:\n    via: proxy\n'
        f"    upstream: {json.dumps(url)}\n    env: API_BASE\n"
    )
    repo = make_repo({".outloop/fix.yml": loop})
    checked = run_cli(repo, "validate")
    ran = run_cli(repo, "run", "fix")
    listed = run_cli(repo, "list", "--json")
    matrix = run_cli(repo, "matrix")
    for done in (checked, ran):
        _assert_clean_exit_2(done)
        assert ".outloop/fix.yml" in done.stderr and ":9:15: credentials.api.upstream:" in (
            done.stderr
        )
    for done in (checked, ran, listed, matrix):
        assert "PASSWORD-9f3" not in done.stdout + done.stderr
    assert not runs_dir(repo).exists()


# --- validate reads the files a run reads, from the commit the run starts from ---------


def test_a_prompt_file_missing_at_the_starting_commit_fails_validate(
    make_repo: RepoFactory,
) -> None:
    loop = "agent:\n  preset: claude\n  prompt_file: PROMPT.md\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": loop})
    # there in the work tree, not in the commit: a run would not find it
    (repo / "PROMPT.md").write_text("Fix the tests.\n")

    done = run_cli(repo, "validate")

    _assert_clean_exit_2(done)
    head = git(repo, "rev-parse", "HEAD").strip()[:10]
    assert f".outloop/fix.yml:3:16: agent.prompt_file: `PROMPT.md` is not in commit {head}" in (
        done.stderr
    )
    assert "starting commit" in done.stderr
    ran = run_cli(repo, "run", "fix")
    _assert_clean_exit_2(ran)
    assert f".outloop/fix.yml@{head}:3:16: agent.prompt_file:" in ran.stderr

    git(repo, "add", "PROMPT.md")
    git(repo, "commit", "-qm", "the prompt")
    assert run_cli(repo, "validate").returncode == 0
    # --from names the commit a run would start from
    old = run_cli(repo, "validate", "--from", "HEAD~1")
    _assert_clean_exit_2(old)
    assert f"not in commit {head}" in old.stderr


def test_validate_asks_the_commit_only_for_a_loop_that_names_files(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inline = COMMAND + "  prompt: Fix the tests.\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": inline})
    calls = tmp_path / "git-calls"
    shim = tmp_path / "bin"
    shim.mkdir()
    real_git = shutil.which("git")
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real_git} "$@"\n')
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")

    assert run_cli(repo, "validate").returncode == 0
    # finding the repository is all: an inline prompt needs nothing of the commit
    asked = calls.read_text().splitlines()
    assert len(asked) == 1 and "--show-toplevel" in asked[0], asked
    # a starting commit the user names is still checked
    missing = run_cli(repo, "validate", "--from", "no-such-ref")
    _assert_clean_exit_2(missing)
    assert "no-such-ref" in missing.stderr
    # and a loop naming a file looks for it in the commit
    (repo / ".outloop" / "fix.yml").write_text(
        COMMAND + "  prompt_file: PROMPT.md\ngoal:\n  run: 'true'\n"
    )
    _assert_clean_exit_2(run_cli(repo, "validate"))
    assert any("HEAD^{commit}" in line for line in calls.read_text().splitlines()[len(asked) :])
    # a file named twice is checked twice, its commit's files included
    twice = run_cli(repo, "validate", ".outloop/fix.yml", ".outloop/fix.yml")
    _assert_clean_exit_2(twice)
    assert twice.stderr.count("agent.prompt_file: `PROMPT.md` is not in commit") == 2


def test_an_empty_prompt_file_fails_validate(make_repo: RepoFactory) -> None:
    loop = "agent:\n  preset: claude\n  prompt_file: PROMPT.md\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": loop, "PROMPT.md": "  \n"})
    done = run_cli(repo, "validate")
    _assert_clean_exit_2(done)
    assert ".outloop/fix.yml:3:16: agent.prompt_file: `PROMPT.md` is empty" in done.stderr


# --- a header other than Authorization carries the bare key ---------------------------


@pytest.mark.parametrize(
    ("header_yaml", "header", "expected"),
    [
        ("    header: x-api-key\n", "x-api-key", "{key}"),
        ("", "Authorization", "Bearer {key}"),
        ("    header: authorization\n", "authorization", "Bearer {key}"),
        ("    header: x-api-key\n    scheme: Token\n", "x-api-key", "Token {key}"),
        ('    header: Authorization\n    scheme: ""\n', "Authorization", "{key}"),
    ],
)
def test_the_default_scheme_applies_to_authorization_only(
    header_yaml: str, header: str, expected: str
) -> None:
    key = f"sk-{secrets.token_urlsafe(12)}"
    with UpstreamServer() as upstream:
        text = (
            COMMAND + 'goal:\n  run: "true"\ncredentials:\n  api:\n'
            f"    upstream: {upstream.url}\n    env: API_BASE\n{header_yaml}"
        )
        config = load_loop_text(text, file="fix.yml", name="fix")
        [cred] = config.credentials
        with started_broker({"api": key}, [cred], Events()) as broker:
            assert request(broker.agent_env()["API_BASE"], path="/echo").status == 200
        [received] = upstream.requests
    sent = {k.lower(): v for k, v in received.headers.items()}
    assert sent[header.lower()] == expected.format(key=key)


# --- an entry named like the preset's credential changes only what it writes ----------


def test_a_preset_credential_entry_overrides_single_fields() -> None:
    text = (
        "agent:\n  preset: claude\n  prompt: Fix it.\ngoal:\n  run: 'true'\n"
        "credentials:\n  anthropic:\n    upstream: https://llm-gateway.example.com/anthropic\n"
    )
    config = load_loop_text(text, file="fix.yml", name="fix")
    assert config.credentials == (
        CredentialConfig(
            name="anthropic",
            via="proxy",
            upstream="https://llm-gateway.example.com/anthropic",
            env="ANTHROPIC_BASE_URL",
            header="x-api-key",
            scheme="",
        ),
    )
    allow_only = text.replace(
        "    upstream: https://llm-gateway.example.com/anthropic\n",
        '    allow: ["POST /v1/messages"]\n',
    )
    [narrowed] = load_loop_text(allow_only, file="fix.yml", name="fix").credentials
    assert narrowed.upstream == "https://api.anthropic.com"
    assert narrowed.allow == ("POST /v1/messages",)
    # a new header brings the scheme that goes with it
    bearer = text.replace("    upstream:", "    header: Authorization\n    upstream:")
    [gateway] = load_loop_text(bearer, file="fix.yml", name="fix").credentials
    assert (gateway.header, gateway.scheme, gateway.env) == (
        "Authorization",
        "Bearer",
        "ANTHROPIC_BASE_URL",
    )


def test_a_preset_credential_entry_for_another_preset_is_a_credential_of_its_own(
    make_repo: RepoFactory,
) -> None:
    # `anthropic` is claude's; with codex it is an ordinary entry, which needs env
    loop = (
        "agent:\n  preset: codex\n  prompt: Fix it.\ngoal:\n  run: 'true'\n"
        "credentials:\n  anthropic:\n    upstream: https://api.anthropic.com\n"
    )
    repo = make_repo({".outloop/fix.yml": loop})
    done = run_cli(repo, "validate")
    _assert_clean_exit_2(done)
    assert ".outloop/fix.yml:8:5: credentials.anthropic: missing `env`" in done.stderr


# --- the variables the runner owns ------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "USER", "SHELL", "TMPDIR", "GIT_DIR", "GIT_CONFIG_COUNT"]
)
def test_agent_env_may_not_set_what_the_runner_owns(make_repo: RepoFactory, name: str) -> None:
    loop = COMMAND + f"  env:\n    {name}: /tmp/x\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": loop})
    for done in (run_cli(repo, "validate"), run_cli(repo, "run", "fix")):
        _assert_clean_exit_2(done)
        assert f":5:5: agent.env: '{name}'" in done.stderr
    assert not runs_dir(repo).exists()


def test_other_variables_and_other_cases_stay_allowed(make_repo: RepoFactory) -> None:
    loop = COMMAND + "  env:\n    path: x\n    GIT_TRACE: '1'\n    LOG: x\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": loop})
    assert run_cli(repo, "validate").returncode == 0


def test_the_refusal_of_a_secret_names_file_and_line_never_the_value(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy's own mistakes are located too, and a bad policy never leaks a key."""
    loop = "agent:\n  preset: command\n  command: ['true']\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": loop})
    policy = tmp_path / "policy.yml"
    policy.write_text(
        f"workspaces:\n  a:\n    repos: [{repo}]\n"
        "    secrets: [{name: api, upstreams: ['https://me:hunter2@api.example.com']}]\n"
    )
    policy.chmod(0o600)
    monkeypatch.setenv("OUTLOOP_POLICY", str(policy))
    loop_with_secret = loop + "credentials:\n  api: {upstream: 'https://api.example.com', env: X}\n"
    (repo / ".outloop/fix.yml").write_text(loop_with_secret)
    git(repo, "commit", "-qam", "api")
    done = run_cli(repo, "run", "fix")
    _assert_clean_exit_2(done)
    assert f"{policy}:4:39: workspaces.a.secrets[0].upstreams[0]" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


# --- more of the same kind: what a run would do wrong, said by validate ----------------


def test_a_ca_bundle_that_is_not_pem_fails_validate(make_repo: RepoFactory) -> None:
    loop = (
        COMMAND + "goal:\n  run: 'true'\ncredentials:\n  api:\n"
        "    upstream: https://api.example.com\n    env: API_BASE\n    ca_bundle: certs/ca.pem\n"
    )
    repo = make_repo({".outloop/fix.yml": loop, "certs/ca.pem": "not a certificate\n"})
    done = run_cli(repo, "validate")
    _assert_clean_exit_2(done)
    assert ".outloop/fix.yml:10:16: credentials.api.ca_bundle: `certs/ca.pem` holds no PEM" in (
        done.stderr
    )


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (
            '  api: {upstream: "https://a.example/v1", env: API, allow: ["POST /chat/*"]}\n',
            ":7:61: credentials.api.allow[0]: 'POST /chat/*' can never match",
        ),
        (
            '  a: {upstream: "https://a.example", env: API}\n'
            '  b: {upstream: "https://b.example", env: API}\n',
            ":8:43: credentials.b.env: `API` is also the variable of credential `a`",
        ),
    ],
)
def test_credentials_that_could_never_work_as_written_fail_validate(
    make_repo: RepoFactory, credentials: str, expected: str
) -> None:
    loop = COMMAND + "goal:\n  run: 'true'\ncredentials:\n" + credentials
    repo = make_repo({".outloop/fix.yml": loop})
    done = run_cli(repo, "validate")
    _assert_clean_exit_2(done)
    assert expected in done.stderr


def test_agent_env_may_not_set_a_credentials_proxy_variable(make_repo: RepoFactory) -> None:
    loop = (
        COMMAND + "  env: {API_BASE: 'https://elsewhere.example'}\ngoal:\n  run: 'true'\n"
        "credentials:\n  api: {upstream: 'https://a.example', env: API_BASE}\n"
    )
    done = run_cli(make_repo({".outloop/fix.yml": loop}), "validate")
    _assert_clean_exit_2(done)
    assert ":4:9: agent.env: `API_BASE` is where credential `api` gives the agent" in done.stderr


def test_a_presets_own_variable_stays_the_loops_to_set() -> None:
    # e.g. codex pointed at a local model server, with no key from the policy
    text = (
        "agent:\n  preset: codex\n  prompt: x\n  env: {OPENAI_BASE_URL: 'http://localhost:11434/v1'}\n"
        "goal:\n  run: 'true'\n"
    )
    assert load_loop_text(text, file="fix.yml", name="fix").agent.env == (
        ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
    )


@pytest.mark.parametrize("command", ["[' ']", "' '", '"agent\\0 x"'])
def test_a_blank_or_nul_program_fails_validate(make_repo: RepoFactory, command: str) -> None:
    loop = f"agent:\n  preset: command\n  command: {command}\ngoal:\n  run: 'true'\n"
    done = run_cli(make_repo({".outloop/fix.yml": loop}), "validate")
    _assert_clean_exit_2(done)
    assert ".outloop/fix.yml:3:" in done.stderr


def test_a_prompt_file_that_is_not_utf8_fails_validate(make_repo: RepoFactory) -> None:
    loop = "agent:\n  preset: claude\n  prompt_file: PROMPT.md\ngoal:\n  run: 'true'\n"
    repo = make_repo({".outloop/fix.yml": loop})
    (repo / "PROMPT.md").write_bytes(b"Fix \xff\xfe it\n")
    git(repo, "add", "PROMPT.md")
    git(repo, "commit", "-qm", "prompt")
    done = run_cli(repo, "validate")
    _assert_clean_exit_2(done)
    assert ".outloop/fix.yml:3:16: agent.prompt_file: `PROMPT.md` is not UTF-8 text" in done.stderr
