"""The proxy against an upstream that hands the key back everywhere HTTP allows (issue 12, part 3).

Each reflection is asked for twice: through the proxy, where nothing the key
can be read out of may come back, and straight from the upstream (the
control), where the same request must give the key away, so a test that
passes is one whose attack works and whose search finds it.

Two key shapes: one of token characters only (``sk-proj-…_…``, what real API
keys look like), which is a valid header name and so comes back as one, and
one with ``/``, ``+`` and ``=``, which URL, JSON and base64 forms change. The
first is the condition under which the header-name leak showed: with the
second, the upstream's answer is not valid HTTP and never got through.
"""

from __future__ import annotations

import secrets
import socket
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.fakes.reflecting_upstream import MODES, ReflectingUpstream
from tests.support.credentials import Events, proxy_cred, started_broker
from tests.support.reflection import body_of, recovered

# modes the proxy cannot decode, so must refuse whole
REFUSED = {"gzip_gzip", "gzip_twice_headers", "br", "unknown", "te_gzip"}


def token_key() -> str:
    return f"sk-proj-{secrets.token_hex(12)}_{secrets.token_hex(6)}"


def symbol_key() -> str:
    return f"sk-canary/{secrets.token_urlsafe(18)}+Z="


def raw_get(port: int, target: str, headers: str = "", http10: bool = False) -> bytes:
    """One request as an agent speaking raw HTTP would send it, read until the server closes."""
    version = "HTTP/1.0" if http10 else "HTTP/1.1"
    message = f"GET {target} {version}\r\nHost: api\r\n{headers}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(message.encode())
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.fixture
def upstream() -> Iterator[ReflectingUpstream]:
    with ReflectingUpstream() as server:
        yield server


def _through_proxy(upstream: ReflectingUpstream, key: str, targets: list[str]) -> list[bytes]:
    events = Events()
    cred = proxy_cred("api", upstream.url + "/v1", env="API_BASE", allow=("GET /v1/*",))
    # another workspace's key is known to outloop too (a CI variable), never granted here
    with started_broker({"api": key}, [cred], events) as broker:
        route = urllib.parse.urlsplit(broker.agent_env()["API_BASE"])
        assert route.port is not None
        replies = [raw_get(route.port, route.path + target) for target in targets]
    for name, fields in events.items:
        assert not recovered(key, repr((name, fields)).encode()), (name, fields)
    return replies


@pytest.mark.parametrize("shape", [token_key, symbol_key], ids=["token-key", "symbol-key"])
@pytest.mark.parametrize("mode", MODES)
def test_no_reflection_gives_the_key_back(
    upstream: ReflectingUpstream, mode: str, shape: object
) -> None:
    assert callable(shape)
    key = shape()
    [reply] = _through_proxy(upstream, key, [f"/{mode}"])
    assert not recovered(key, reply), (mode, reply[:400])
    status = reply.split(b"\r\n", 1)[0]
    if mode in REFUSED:
        assert status == b"HTTP/1.1 502 Bad Gateway"
        assert b"can decode and scrub" in reply
    elif mode == "reason":
        # the standard phrase, not the upstream's
        assert status == b"HTTP/1.1 401 Unauthorized"
    elif mode in ("header_name", "trailers", "case") and shape is symbol_key:
        # such a header name is not valid HTTP: refused, and the parser's quote of it dropped
        assert status == b"HTTP/1.1 502 Bad Gateway"
        assert b"not valid HTTP" in reply
    else:
        assert status.split(b" ")[1] in (b"200", b"401"), reply[:300]
    # the upstream did get the key, so there was something to leak
    assert upstream.seen[-1].header("Authorization") == f"Bearer {key}"


@pytest.mark.parametrize("mode", MODES)
def test_control_the_upstream_alone_gives_the_key_back(
    upstream: ReflectingUpstream, mode: str
) -> None:
    key = token_key()
    reply = raw_get(upstream.port, f"/v1/{mode}", headers=f"Authorization: Bearer {key}\r\n")
    if mode in ("early_hints", "trailers") or mode == "header_name":
        # visible to a raw client in the interim response, the trailers, the header names
        assert key.encode() in reply or key.lower().encode() in reply.lower()
    assert recovered(key, reply), (mode, reply[:300])


def test_a_key_split_across_two_reads_is_caught_at_every_cut(upstream: ReflectingUpstream) -> None:
    key = token_key()
    body_length = len(f"you sent {key}\n")
    targets = [f"/split_chunks?cut={cut}" for cut in range(1, body_length)]
    targets += [f"/close_delimited?cut={cut}" for cut in range(9, body_length, 7)]
    targets += [f"/split_gzip?cut={cut}" for cut in range(10, 60, 9)]
    for target, reply in zip(targets, _through_proxy(upstream, key, targets), strict=True):
        assert not recovered(key, reply), (target, reply[-200:])
        assert reply.startswith(b"HTTP/1.1 200"), (target, reply[:200])
        assert body_of(reply) == b"you sent ***\n", target


def test_the_upstream_is_asked_only_for_what_the_proxy_decodes(
    upstream: ReflectingUpstream,
) -> None:
    _through_proxy(upstream, token_key(), ["/gzip"])
    assert upstream.seen[-1].header("Accept-Encoding") == "gzip, identity"


def test_an_http10_client_gets_a_close_delimited_body_scrubbed(
    upstream: ReflectingUpstream,
) -> None:
    key = token_key()
    cred = proxy_cred("api", upstream.url + "/v1", env="API_BASE")
    with started_broker({"api": key}, [cred], Events()) as broker:
        route = urllib.parse.urlsplit(broker.agent_env()["API_BASE"])
        assert route.port is not None
        reply = raw_get(route.port, route.path + "/split_gzip?cut=20", http10=True)
    assert reply.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), reply[:100]
    assert body_of(reply) == b"you sent ***\n"
    assert not recovered(key, reply)


def test_another_workspaces_ci_key_is_scrubbed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client B's key, handed to outloop as a CI variable, is not this run's: still, an upstream
    that knows it (a host both clients use) cannot pass it through this run's proxy."""
    from outloop_cli.credentials import ci_env

    key_a, key_b = token_key(), token_key()
    monkeypatch.setattr(ci_env, "_values", {"OUTLOOP_SECRET_CLIENT_B_API": key_b})
    with ReflectingUpstream(other_key=key_b) as upstream:
        cred = proxy_cred("api", upstream.url + "/v1", env="API_BASE")
        with started_broker({"api": key_a}, [cred], Events()) as broker:
            route = urllib.parse.urlsplit(broker.agent_env()["API_BASE"])
            assert route.port is not None
            reply = raw_get(route.port, route.path + "/other")
            control = raw_get(upstream.port, "/v1/other")
    assert body_of(reply) == b"another client's key: ***\n"
    assert not recovered(key_b, reply)
    assert recovered(key_b, control)
