"""The forge HTTP client and GitHub App tokens, against the GitHub-shaped fake on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from outloop_cli.errors import UsageError
from outloop_cli.forges.github_app import AppCredentials, app_jwt
from outloop_cli.forges.http import ForgeClient, ForgeError, _parse_retry_after, next_link
from outloop_cli.forges.remote import api_url_for, graphql_url_for, parse_remote, resolve_repo
from outloop_cli.forges.session import open_forge_session, parse_github_secret
from tests.fakes.github_server import FakeGitHub, rsa_key_pair, verify_jwt

SHA = "b" * 40


@pytest.fixture(scope="module")
def keys() -> tuple[str, bytes]:
    return rsa_key_pair()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


def app_secret(private: str, installation: int | None = 77) -> str:
    data: dict[str, object] = {"app_id": "4242", "private_key": private}
    if installation is not None:
        data["installation_id"] = installation
    return json.dumps(data)


GRANTED = {
    "checks": "read",
    "statuses": "read",
    "actions": "read",
    "contents": "write",
    "pull_requests": "write",
    "metadata": "read",
}


# -- remotes and API URLs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://github.com/octo/widgets.git", "github.com", "octo/widgets"),
        ("https://x-access-token@github.com/octo/widgets", "github.com", "octo/widgets"),
        ("git@github.com:octo/widgets.git", "github.com", "octo/widgets"),
        ("ssh://git@ghe.example.com:2222/octo/widgets.git", "ghe.example.com", "octo/widgets"),
        ("https://gitlab.com/group/sub/project.git", "gitlab.com", "group/sub/project"),
    ],
)
def test_parse_remote(url: str, host: str, path: str) -> None:
    remote = parse_remote(url)
    assert remote is not None and (remote.host, remote.path) == (host, path)


@pytest.mark.parametrize("url", ["/srv/git/repo.git", "file:///srv/x.git", "https://host/only"])
def test_unparseable_remotes(url: str) -> None:
    assert parse_remote(url) is None


def test_repo_and_api_url_resolution() -> None:
    assert (
        resolve_repo("octo/other", "git@github.com:octo/widgets.git", provider="github").path
        == "octo/other"
    )
    with pytest.raises(UsageError, match="owner/name"):
        resolve_repo("just-a-name", None, provider="github")
    with pytest.raises(UsageError, match="origin"):
        resolve_repo(None, None, provider="github")
    assert api_url_for("github", "github.com", None, {}) == "https://api.github.com"
    assert api_url_for("github", "ghe.corp", None, {}) == "https://ghe.corp/api/v3"
    assert (
        api_url_for("github", "github.com", None, {"GITHUB_API_URL": "https://ghe.corp/api/v3/"})
        == "https://ghe.corp/api/v3"
    )
    assert (
        api_url_for("github", "x", "https://explicit/api", {"GITHUB_API_URL": "y"})
        == "https://explicit/api"
    )
    assert api_url_for("gitlab", "gitlab.com", None, {}) == "https://gitlab.com/api/v4"
    assert graphql_url_for("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url_for("https://ghe.corp/api/v3") == "https://ghe.corp/api/graphql"


# -- the HTTP client -------------------------------------------------------------------


def test_link_header_and_retry_after_parsing() -> None:
    link = '<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last"'
    assert next_link(link) == "https://api.github.com/x?page=2"
    assert next_link('<https://a/x?page=1>; rel="prev"') is None
    now = time.time()
    assert _parse_retry_after("7", now) == 7.0
    assert 9 <= (_parse_retry_after(formatdate(now + 10, usegmt=True), now) or 0) <= 11


def test_errors_name_the_request_not_the_token(github: FakeGitHub) -> None:
    client = ForgeClient(github.api_url, auth=lambda: {"Authorization": "Bearer nope-secret"})
    with pytest.raises(ForgeError) as info:
        client.request("GET", f"/repos/octo/widgets/commits/{SHA}/check-runs")
    text = info.value.render()
    assert "401" in text and "Bad credentials" in text and "nope-secret" not in text
    with pytest.raises(ForgeError, match="404"):
        ForgeClient(github.api_url).request("GET", "/nowhere")


def test_unreachable_server_is_retried_then_reported() -> None:
    client = ForgeClient("http://127.0.0.1:9", max_retries=2, backoff=0.01)
    with pytest.raises(ForgeError, match="could not be reached after 3 attempts"):
        client.request("GET", "/x")


def test_etag_is_sent_back_and_304_returns_the_kept_body(github: FakeGitHub) -> None:
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    client = ForgeClient(github.api_url, auth=lambda: {"Authorization": "Bearer ghp_test_token"})
    path = f"/repos/octo/widgets/commits/{SHA}/check-runs"
    first = client.request("GET", path, conditional=True)
    second = client.request("GET", path, conditional=True)
    assert not first.from_cache and second.from_cache
    assert second.json() == first.json()
    assert client.stats.not_modified == 1
    assert github.requests[-1].status == 304
    assert github.requests[-1].headers["if-none-match"] == first.header("etag")


# -- GitHub App tokens ------------------------------------------------------------------


def test_jwt_is_rs256_and_verifies(keys: tuple[str, bytes]) -> None:
    private, public = keys
    token = app_jwt(AppCredentials("4242", private))
    assert verify_jwt(token, public, "4242") is None
    assert verify_jwt(token, public, "9999") == "iss is not the app"
    _, other_public = rsa_key_pair()
    assert verify_jwt(token, other_public, "4242") == "signature does not verify"
    old = app_jwt(AppCredentials("4242", private), now=time.time() - 3600)
    assert "expired" in (verify_jwt(old, public, "4242") or "")


def test_app_token_is_minted_narrowed_and_revoked(
    github: FakeGitHub, keys: tuple[str, bytes]
) -> None:
    private, public = keys
    github.add_app("4242", public, {77: ("octo", GRANTED)})
    github.add_check(SHA, "tests", [(0, "completed", "success")])
    session = open_forge_session(
        provider="github",
        secret=app_secret(private),
        remote_url="https://github.com/octo/widgets.git",
        api_url=github.api_url,
        environ={},
    )
    assert session.token_kind == "app"
    (minted,) = github.minted.values()
    assert minted.repositories == ["widgets"]
    assert minted.permissions == {
        "checks": "read",
        "statuses": "read",
        "actions": "read",
        "contents": "write",
    }
    assert session.token() == minted.token
    # the minted token works for the repository it was narrowed to
    session.client.get_json(f"/repos/octo/widgets/commits/{SHA}/check-runs")
    mint_request = github.api_requests("/access_tokens")[0]
    assert mint_request.body["repositories"] == ["widgets"]
    assert repr(session).count(minted.token) == 0
    session.close()
    assert minted.revoked
    assert github.api_requests("/installation/token")[0].headers["authorization"] == (
        f"Bearer {minted.token}"
    )
    with pytest.raises(ForgeError, match="closed"):
        session.token()


def test_app_installation_is_found_from_the_repo(
    github: FakeGitHub, keys: tuple[str, bytes]
) -> None:
    private, public = keys
    github.add_app("4242", public, {91: ("octo", GRANTED)})
    with open_forge_session(
        provider="github",
        secret=app_secret(private, installation=None),
        remote_url="git@github.com:octo/widgets.git",
        api_url=github.api_url,
        environ={},
        want_pr=True,
    ) as session:
        assert session.token().startswith("ghs_")
    (minted,) = github.minted.values()
    assert minted.installation == 91
    assert minted.permissions["pull_requests"] == "write"
    assert minted.revoked


def test_app_without_the_needed_permission_is_refused(
    github: FakeGitHub, keys: tuple[str, bytes]
) -> None:
    private, public = keys
    github.add_app("4242", public, {77: ("octo", {"checks": "read", "contents": "read"})})
    with pytest.raises(ForgeError, match=r"422.*not granted"):
        open_forge_session(
            provider="github",
            secret=app_secret(private),
            remote_url="https://github.com/octo/widgets",
            api_url=github.api_url,
            environ={},
        )


def test_a_forged_jwt_is_refused(github: FakeGitHub, keys: tuple[str, bytes]) -> None:
    _, public = keys
    wrong_private, _ = rsa_key_pair()
    github.add_app("4242", public, {77: ("octo", GRANTED)})
    with pytest.raises(ForgeError, match="401"):
        open_forge_session(
            provider="github",
            secret=app_secret(wrong_private),
            remote_url="https://github.com/octo/widgets",
            api_url=github.api_url,
            environ={},
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "neither a token"),
        ("two words", "neither a token"),
        ("{not json", "not valid JSON"),
        ('{"app_id": "1"}', "needs `app_id`"),
        ('{"app_id": "1", "private_key": "k", "installation_id": "x"}', "not a number"),
    ],
)
def test_bad_secrets_are_explained_without_echoing(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_github_secret(value)
    if value:
        assert value not in info.value.render()


def test_a_bad_private_key_is_explained() -> None:
    with pytest.raises(UsageError, match="not a PEM RSA private key") as info:
        app_jwt(AppCredentials("1", "-----BEGIN RSA PRIVATE KEY-----\nsecretstuff\n-----END"))
    assert "secretstuff" not in info.value.render()
