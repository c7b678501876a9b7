"""Path normalisation before ``allow`` (issue 12, part 3): one meaning per path, or a refusal.

The table is the point: every row is a path some server reads differently
from another, and the proxy must either refuse it or turn it into the one
path it then matches and forwards.
"""

from __future__ import annotations

import pytest

from outloop_cli.config.model import CredentialConfig
from outloop_cli.credentials.routes import PathRefused, ProxyRoute


def route(allow: tuple[str, ...] = ("GET /v1/public/*",)) -> ProxyRoute:
    config = CredentialConfig(
        name="api", via="proxy", upstream="http://127.0.0.1:9/v1", allow=allow
    )
    return ProxyRoute.build(config, "sk-test-key-0123456789")


# (what followed the route in the proxy URL, what allow sees, what is forwarded)
NORMALISED = [
    ("", "/v1", "/v1"),
    ("/public/models", "/v1/public/models", "/v1/public/models"),
    ("/public/models/", "/v1/public/models/", "/v1/public/models/"),
    # unreserved characters encoded for no reason come out plain
    ("/public/%7Euser/%41", "/v1/public/~user/A", "/v1/public/~user/A"),
    # a space and UTF-8 are kept, and forwarded encoded
    ("/public/my%20file.txt", "/v1/public/my file.txt", "/v1/public/my%20file.txt"),
    ("/public/caf%C3%A9", "/v1/public/café", "/v1/public/caf%C3%A9"),
    ("/public/café", "/v1/public/café", "/v1/public/caf%C3%A9"),
    # ':' and '@' belong to paths (Google's /models/x:generateContent)
    ("/public/m:generate", "/v1/public/m:generate", "/v1/public/m:generate"),
    # '//' is one '/'
    ("//public//x", "/v1/public/x", "/v1/public/x"),
    # '+' is a plus in a path, not a space
    ("/public/a+b", "/v1/public/a+b", "/v1/public/a+b"),
    # sub-delimiters decode to themselves
    ("/public/%3Dx%2C%40", "/v1/public/=x,@", "/v1/public/=x,@"),
]

REFUSED = [
    ("/public/../admin", "a . or .. segment"),
    ("/public/./x", "a . or .. segment"),
    ("/public/%2e%2e/admin", "a . or .. segment"),
    ("/public/.%2E/admin", "a . or .. segment"),
    ("/public/%2e/x", "a . or .. segment"),
    ("/public/..", "a . or .. segment"),
    ("/public/..;/admin", "a ; parameter"),
    ("/public/x;jsessionid=1", "a ; parameter"),
    ("/public/%3B/admin", "a ; parameter"),
    ("/public/..%2fadmin", "an encoded /"),
    ("/public/..%2Fadmin", "an encoded /"),
    ("/public/a%2Fb", "an encoded /"),
    ("/public/..%5cadmin", "an encoded /"),
    ("/public/%252e%252e/admin", "an encoded %"),
    ("/public/%252fadmin", "an encoded %"),
    ("/public/%25", "an encoded %"),
    ("/public/..\\admin", "a backslash"),
    ("/public\\..\\admin", "a backslash"),
    ("/public/%zz", "not a valid escape"),
    ("/public/%4", "not a valid escape"),
    ("/public/%", "not a valid escape"),
    ("/public/%c0%ae%c0%ae/admin", "not UTF-8"),
    ("/public/%ff", "not UTF-8"),
    ("/public/%00", "an encoded control character"),
    ("/public/x%0d%0aX-Injected:%201", "an encoded control character"),
    ("/public/x%3Fy", "an encoded control character, ? or #"),
    ("/public/x%23y", "an encoded control character, ? or #"),
    ("/public/\uff0e\uff0e/admin", "Unicode folding"),
    ("/public/\uff0fadmin", "Unicode folding"),
    ("/public/%EF%BC%8E%EF%BC%8E/admin", "Unicode folding"),
    ("public", "does not start with /"),
    ("/public/a b", "a space"),
    ("/public/x#frag", "#"),
]


@pytest.mark.parametrize(("rest", "decoded", "encoded"), NORMALISED)
def test_a_path_with_one_meaning_is_matched_and_forwarded_as_that_meaning(
    rest: str, decoded: str, encoded: str
) -> None:
    path = route().upstream_path(rest)
    assert (path.decoded, path.encoded) == (decoded, encoded)


@pytest.mark.parametrize(("rest", "why"), REFUSED)
def test_a_path_servers_could_read_differently_is_refused(rest: str, why: str) -> None:
    with pytest.raises(PathRefused) as refused:
        route().upstream_path(rest)
    assert refused.value.reason == "bad_path"
    assert why in refused.value.detail
    # the detail names the problem, never the path (which may carry anything)
    assert rest not in refused.value.detail


def test_allow_is_matched_against_the_decoded_path_once() -> None:
    r = route()
    assert r.allows("GET", r.upstream_path("/public/models"))
    assert r.allows("GET", r.upstream_path("/%70ublic/models"))
    assert not r.allows("POST", r.upstream_path("/public/models"))
    assert not r.allows("GET", r.upstream_path("/admin"))
    # what is forwarded is what was judged: never decoded a second time upstream
    assert r.upstream_path("/%70ublic/models").encoded == "/v1/public/models"


def test_without_allow_the_upstream_base_path_is_the_limit() -> None:
    r = route(allow=())
    assert r.allows("DELETE", r.upstream_path("/anything/below"))
    assert r.upstream_path("").decoded == "/v1"
