"""The policy file: validation with positions, remote normalisation, workspace matching."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from outloop_cli.config.policy_schema import json_schema
from outloop_cli.credentials.policy import check_policy_text, load_policy, match_workspace
from outloop_cli.credentials.remotes import normalize_remote
from outloop_cli.errors import ConfigError
from tests.conftest import RepoFactory, git

GOOD = """\
workspaces:
  client-a:
    repos: ["github.com/agency/client-a-*", "/home/me/src/client-a"]
    secrets: [openai, crm]
  client-b:
    repos: ["github.com/agency/client-b-*"]
    secrets: [openai, crm]
"""


def write_policy(text: str, directory: Path) -> Path:
    path = directory / "policy.yml"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return path


def problems_of(text: str) -> list[str]:
    policy, problems = check_policy_text(textwrap.dedent(text), file="policy.yml")
    assert policy is None
    return [p.render() for p in problems]


def test_the_spec_example_loads() -> None:
    policy, problems = check_policy_text(GOOD, file="policy.yml")
    assert problems == []
    assert policy is not None
    a = policy.get("client-a")
    assert a is not None
    assert a.repos == ("github.com/agency/client-a-*", "/home/me/src/client-a")
    assert a.secret_names == ("openai", "crm")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "workspace:\n  a: {repos: [x.com/a]}\n",
            [
                "policy.yml:1:1: unknown key `workspace` at the top level\n  hint: did you mean `workspaces`?",
                "policy.yml:1:1: missing required key `workspaces`",
            ],
        ),
        (
            "workspaces:\n  a:\n    repo: [x.com/a]\n",
            [
                "policy.yml:3:5: unknown key `repo` in `workspaces.a`\n  hint: did you mean `repos`?",
                "policy.yml:3:5: workspaces.a: missing required key `repos`",
            ],
        ),
        (
            "workspaces:\n  Client_A:\n    repos: [x.com/a]\n",
            ["policy.yml:2:3: workspaces: expected a name, got 'Client_A'"],
        ),
        (
            "workspaces:\n  a:\n    repos: [src/a]\n    secrets: [Open AI]\n",
            ["policy.yml:4:15: workspaces.a.secrets[0]: expected a secret name, got 'Open AI'"],
        ),
        (
            "workspaces:\n  a:\n    repos: [./src/a]\n",
            ["policy.yml:3:13: workspaces.a.repos[0]: './src/a' is a relative path"],
        ),
        (
            "workspaces:\n  a:\n    repos: ['https://me:tok@x.com/a']\n",
            ["policy.yml:3:13: workspaces.a.repos[0]: 'https://***@x.com/a' contains credentials"],
        ),
        (
            "workspaces:\n  a:\n    repos: []\n",
            ["policy.yml:3:12: workspaces.a.repos: must not be empty"],
        ),
        (
            "client-a:\n  repos: [x.com/a]\n",
            [
                "policy.yml:1:1: unknown key `client-a` at the top level\n"
                "  hint: valid keys here: workspaces; workspaces go under `workspaces:`",
                "policy.yml:1:1: missing required key `workspaces`",
            ],
        ),
        ("", ["policy.yml:1:1: the policy file is empty"]),
        ("workspaces: [a, b]\n", ["policy.yml:1:13: workspaces: expected a mapping, got a list"]),
        ("workspaces:\n  a: {repos: [x.com/a]\n", ["policy.yml:3:1: invalid YAML"]),
    ],
)
def test_problems_are_located(text: str, expected: list[str]) -> None:
    rendered = problems_of(text)
    assert len(rendered) == len(expected), rendered
    for got, want in zip(rendered, expected, strict=True):
        assert got.startswith(want), (got, want)


def test_same_repo_pattern_in_two_workspaces_is_an_error() -> None:
    rendered = problems_of(
        """\
        workspaces:
          a: {repos: ["github.com/agency/*"]}
          b: {repos: ["https://github.com/agency/*.git"]}
        """
    )
    assert len(rendered) == 1
    assert rendered[0].startswith("policy.yml:3:15: workspaces.b.repos: ")
    assert "also a repo of workspace `a`" in rendered[0]


def test_two_pairs_reading_the_same_ci_variable_is_an_error() -> None:
    rendered = problems_of(
        """\
        workspaces:
          client-a: {repos: [x.com/a], secrets: [x]}
          client: {repos: [x.com/b], secrets: [a-x]}
        """
    )
    assert len(rendered) == 1
    assert "OUTLOOP_SECRET_CLIENT_A_X" in rendered[0]
    assert rendered[0].startswith("policy.yml:3:40:")


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://github.com/agency/x.git", "github.com/agency/x"),
        ("https://github.com/agency/x", "github.com/agency/x"),
        ("https://github.com/agency/x.git/", "github.com/agency/x"),
        ("https://user:tok@GitHub.com:443/agency/x.git", "github.com/agency/x"),
        ("http://git.local:8080/a/b", "git.local:8080/a/b"),
        ("ssh://git@github.com/agency/x.git", "github.com/agency/x"),
        ("ssh://git@github.com:22/agency/x.git", "github.com/agency/x"),
        (
            "ssh://git@gitlab.example.com:2222/group/sub/x.git",
            "gitlab.example.com:2222/group/sub/x",
        ),
        ("git@github.com:agency/x.git", "github.com/agency/x"),
        ("github.com:agency/x", "github.com/agency/x"),
        ("git@github.com:/agency/x.git", "github.com/agency/x"),
        ("git://example.org/x.git", "example.org/x"),
        ("github.com/agency/client-a-*", "github.com/agency/client-a-*"),
        ("/srv/git/x.git", None),
        ("file:///srv/git/x.git", None),
        ("./x", None),
        ("", None),
    ],
)
def test_normalize_remote(url: str, normal: str | None) -> None:
    assert normalize_remote(url) == normal


def repo_with_remotes(make_repo: RepoFactory, *urls: str, name: str | None = None) -> Path:
    repo = make_repo({"README": "x"}, name=name)
    for i, url in enumerate(urls):
        git(repo, "remote", "add", f"r{i}", url)
    return repo


def remote_urls(repo: Path) -> list[str]:
    """The repo's remotes as the engine reads them: git's own view, insteadOf applied."""
    urls = []
    for remote in git(repo, "remote").split():
        urls.extend(git(repo, "remote", "get-url", "--all", remote).split())
    return urls


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    return write_policy(GOOD, tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/agency/client-a-web.git",
        "git@github.com:agency/client-a-api.git",
        "ssh://git@github.com/agency/client-a-x",
        "https://ci-token:secret@github.com/Agency/Client-A-web",
    ],
)
def test_remote_matches_one_workspace(make_repo: RepoFactory, policy_file: Path, url: str) -> None:
    repo = repo_with_remotes(make_repo, url)
    match = match_workspace(repo, remote_urls(repo), policy_path=policy_file)
    assert match.workspace is not None and match.workspace.name == "client-a"
    assert match.matched_by and "github.com/agency/client-a-*" in match.matched_by[0]
    assert "secret" not in match.reason


def test_star_does_not_cross_a_slash(make_repo: RepoFactory, policy_file: Path) -> None:
    repo = repo_with_remotes(make_repo, "https://github.com/agency/client-a-x/evil")
    match = match_workspace(repo, remote_urls(repo), policy_path=policy_file)
    assert match.workspace is None
    assert "no workspace" in match.reason


def test_double_star_crosses_slashes(make_repo: RepoFactory, tmp_path: Path) -> None:
    policy = write_policy(
        """\
        workspaces:
          gl: {repos: ["gitlab.example.com/agency/**"], secrets: [x]}
        """,
        tmp_path,
    )
    repo = repo_with_remotes(make_repo, "git@gitlab.example.com:agency/sub/group/x.git")
    match = match_workspace(repo, remote_urls(repo), policy_path=policy)
    assert match.workspace is not None and match.workspace.name == "gl"


def test_path_pattern_matches_the_checkout(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo = repo_with_remotes(make_repo, name="client-c")
    policy = write_policy(
        f"""\
        workspaces:
          c: {{repos: ["{repo.parent}/client-*"], secrets: [x]}}
        """,
        tmp_path,
    )
    match = match_workspace(repo, [], policy_path=policy)
    assert match.workspace is not None and match.workspace.name == "c"
    assert str(repo) in match.reason


def test_tilde_path_pattern(make_repo: RepoFactory, tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    repo_root = home / "src" / "client-d"
    repo_root.mkdir(parents=True)
    git(repo_root, "init", "-q")
    policy = write_policy(
        """\
        workspaces:
          d: {repos: ["~/src/client-d"], secrets: [x]}
        """,
        tmp_path,
    )
    match = match_workspace(repo_root, [], policy_path=policy)
    assert match.workspace is not None and match.workspace.name == "d"


def test_no_match_says_why(make_repo: RepoFactory, policy_file: Path) -> None:
    repo = repo_with_remotes(make_repo, "https://github.com/someone/else.git")
    match = match_workspace(repo, remote_urls(repo), policy_path=policy_file)
    assert match.workspace is None
    assert "no workspace" in match.reason
    assert "github.com/someone/else" in match.reason
    assert str(policy_file) in match.reason


def test_two_matches_get_nothing_and_say_which(make_repo: RepoFactory, policy_file: Path) -> None:
    repo = repo_with_remotes(
        make_repo,
        "https://github.com/agency/client-a-web.git",
        "https://github.com/agency/client-b-web.git",
    )
    match = match_workspace(repo, remote_urls(repo), policy_path=policy_file)
    assert match.workspace is None
    assert match.candidates == ("client-a", "client-b")
    assert "2 workspaces" in match.reason and "exactly one" in match.reason


def test_insteadof_rewritten_remote_is_matched_as_git_sees_it(
    make_repo: RepoFactory, policy_file: Path
) -> None:
    repo = repo_with_remotes(make_repo, "gh:agency/client-b-api")
    git(repo, "config", "url.https://github.com/.insteadOf", "gh:")
    match = match_workspace(repo, remote_urls(repo), policy_path=policy_file)
    assert match.workspace is not None and match.workspace.name == "client-b"


def test_missing_policy_means_no_workspace(make_repo: RepoFactory, tmp_path: Path) -> None:
    repo = repo_with_remotes(make_repo, "https://github.com/agency/client-a-web.git")
    match = match_workspace(repo, remote_urls(repo), policy_path=tmp_path / "none.yml")
    assert match.workspace is None
    assert "no policy file" in match.reason


def test_default_path_and_env_override(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_with_remotes(make_repo, "https://github.com/agency/client-a-web.git")
    default = Path(os.environ["XDG_CONFIG_HOME"]) / "outloop" / "policy.yml"
    default.parent.mkdir(parents=True)
    write_policy(GOOD, default.parent)
    assert match_workspace(repo, remote_urls(repo)).workspace is not None
    other = tmp_path / "other"
    other.mkdir()
    write_policy("workspaces:\n  z: {repos: [x.org/z]}\n", other)
    monkeypatch.setenv("OUTLOOP_POLICY", str(other / "policy.yml"))
    assert match_workspace(repo, remote_urls(repo)).workspace is None


def test_invalid_policy_raises_config_error(make_repo: RepoFactory, tmp_path: Path) -> None:
    policy = write_policy("workspaces:\n  a:\n    repos: [x.com/a]\n    secret: [x]\n", tmp_path)
    repo = repo_with_remotes(make_repo, "https://x.com/a")
    with pytest.raises(ConfigError) as info:
        match_workspace(repo, remote_urls(repo), policy_path=policy)
    assert info.value.exit_code == 2
    assert f"{policy}:4:5: unknown key `secret`" in info.value.render()


def test_policy_writable_by_others_is_refused(tmp_path: Path) -> None:
    policy = write_policy(GOOD, tmp_path)
    policy.chmod(0o666)
    with pytest.raises(ConfigError) as info:
        load_policy(policy)
    assert "writable by other users" in info.value.render()
    assert "chmod go-w" in info.value.render()


def test_policy_inside_the_repo_is_refused(make_repo: RepoFactory) -> None:
    repo = repo_with_remotes(make_repo, "https://github.com/agency/client-a-web.git")
    # a client's repo shipping a policy that claims every workspace
    inside = write_policy(GOOD.replace("client-a-*", "**"), repo)
    with pytest.raises(ConfigError) as info:
        match_workspace(repo, remote_urls(repo), policy_path=inside)
    assert "inside the repository" in info.value.render()


def test_json_schema_accepts_the_example_and_rejects_typos() -> None:
    import jsonschema
    import yaml

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(GOOD))) == []
    bad = {"workspaces": {"a": {"repo": ["x.com/a"]}}}
    assert list(validator.iter_errors(bad))


# --- where each secret may go (issue 12, part 1) ---------------------------------------

BOUND = """\
workspaces:
  client-a:
    repos: [/srv/a]
    secrets:
      - openai
      - name: crm
        upstreams: ["https://crm.example.com/api/v2"]
      - {name: github, hosts: [ghe.example.com], upstreams: ["https://ghe.example.com/api/v3"]}
      - {name: deploy, helper: true}
"""


def test_a_secret_entry_binds_upstreams_hosts_and_helper_with_its_line() -> None:
    from outloop_cli.config.policy_model import SecretEntry

    policy, problems = check_policy_text(BOUND, file="policy.yml")
    assert problems == [] and policy is not None
    a = policy.get("client-a")
    assert a is not None
    assert a.secret_names == ("openai", "crm", "github", "deploy")
    assert a.secrets == (
        SecretEntry("openai", line=5),
        SecretEntry("crm", upstreams=("https://crm.example.com/api/v2",), line=6),
        SecretEntry(
            "github",
            upstreams=("https://ghe.example.com/api/v3",),
            hosts=("ghe.example.com",),
            line=8,
        ),
        SecretEntry("deploy", helper=True, line=9),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "workspaces:\n  a:\n    repos: [/a]\n    secrets: [{name: crm, upstream: [https://x]}]\n",
            "policy.yml:4:27: unknown key `upstream` in `workspaces.a.secrets[0]`\n"
            "  hint: did you mean `upstreams`?",
        ),
        (
            "workspaces:\n  a:\n    repos: [/a]\n    secrets: [{upstreams: [https://x]}]\n",
            "policy.yml:4:15: workspaces.a.secrets[0]: missing required key `name`",
        ),
        (
            "workspaces:\n  a:\n    repos: [/a]\n    secrets: [{name: crm, upstreams: [http://x.com]}]\n",
            "policy.yml:4:39: workspaces.a.secrets[0].upstreams[0]: 'http://x.com' uses plain http",
        ),
        (
            "workspaces:\n  a:\n    repos: [/a]\n"
            "    secrets: [{name: crm, upstreams: ['https://me:hunter2@x.com']}]\n",
            "policy.yml:4:39: workspaces.a.secrets[0].upstreams[0]: 'https://***@x.com' contains",
        ),
        (
            "workspaces:\n  a:\n    repos: [/a]\n    secrets: [{name: git, hosts: ['https://x.com']}]\n",
            "policy.yml:4:35: workspaces.a.secrets[0].hosts[0]: 'https://x.com' has a scheme",
        ),
        (
            "workspaces:\n  a:\n    repos: [/a]\n    secrets: [{name: d, helper: yes}]\n",
            "policy.yml:4:33: workspaces.a.secrets[0].helper:",
        ),
        (
            "workspaces:\n  a:\n    repos: [/a]\n    secrets: [crm, {name: crm, hosts: [x.com]}]\n",
            "policy.yml:4:20: workspaces.a.secrets: `crm` is listed twice",
        ),
    ],
)
def test_a_bad_binding_is_located_and_echoes_no_password(text: str, expected: str) -> None:
    rendered = problems_of(text)
    assert any(r.startswith(expected) for r in rendered), rendered
    assert all("hunter2" not in r for r in rendered)
    assert all("hint:" in r for r in rendered), rendered


def test_every_presets_default_credential_goes_to_its_well_known_api() -> None:
    """A bare `openai` in the policy keeps working with the presets (the migration's promise)."""
    from outloop_cli.agents.registry import PRESETS, default_credentials
    from outloop_cli.config.policy_model import SecretEntry
    from outloop_cli.credentials.bindings import WELL_KNOWN, Binding

    for preset in PRESETS:
        for cred in default_credentials(preset):
            assert cred.name in WELL_KNOWN, cred.name
            binding = Binding.of(SecretEntry(cred.name, line=1), "policy.yml")
            assert binding.refusal(cred) is None, (preset, cred)


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        ("https://crm.example.com/api/v2", True),
        ("https://crm.example.com/api/v2/", True),
        ("https://crm.example.com/api/v2/deals", True),
        ("https://CRM.example.com:443/api/v2/deals", True),
        ("https://crm.example.com/api/v20", False),
        ("https://crm.example.com/api", False),
        ("https://crm.example.com/api/v2/../admin", False),
        ("https://crm.example.com/api/v2/%2e%2e/admin", False),
        ("https://crm.example.com/api/v2/%2fadmin", False),
        ("https://crm.example.com/api/v2\\..\\admin", False),
        ("http://crm.example.com/api/v2", False),
        ("https://crm.example.com:8443/api/v2", False),
        ("https://crm.example.com.evil.net/api/v2", False),
        ("https://user:pw@crm.example.com/api/v2", False),
    ],
)
def test_an_upstream_is_inside_a_binding_by_scheme_host_port_and_path(
    url: str, inside: bool
) -> None:
    from outloop_cli.config.policy_model import SecretEntry
    from outloop_cli.credentials.bindings import Binding

    entry = SecretEntry("crm", upstreams=("https://crm.example.com/api/v2",), line=3)
    assert Binding.of(entry, "policy.yml").allows_url(url) is inside


def test_a_loop_narrows_the_well_known_api_but_cannot_leave_it() -> None:
    from outloop_cli.config.model import CredentialConfig
    from outloop_cli.config.policy_model import SecretEntry
    from outloop_cli.credentials.bindings import Binding

    binding = Binding.of(SecretEntry("openai", line=7), "policy.yml")
    narrow = CredentialConfig("openai", upstream="https://api.openai.com/v1", env="X")
    assert binding.refusal(narrow) is None
    elsewhere = CredentialConfig("openai", upstream="https://openai.example.net/v1", env="X")
    why = binding.refusal(elsewhere)
    assert why is not None and "policy.yml:7" in why and "well-known" in why
    raw = CredentialConfig("openai", via="helper")
    assert "helper: true" in (binding.refusal(raw) or "")
    assert binding.refusal(CredentialConfig("openai", via="git", host="github.com"))
