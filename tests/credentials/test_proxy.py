"""The access proxy against real HTTP(S) upstreams on 127.0.0.1."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from outloop_cli.credentials.proxy import SENTINEL_KEY
from outloop_cli.credentials.redact import REPLACEMENT, Redactor
from outloop_cli.errors import CouldNotRun
from tests.fakes.tls import make_pki
from tests.fakes.upstream_server import UpstreamServer
from tests.support.credentials import (
    Events,
    assert_no_leak,
    canary,
    proxy_cred,
    raw_exchange,
    request,
    started_broker,
)


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


def test_injects_the_key_and_the_agent_sees_only_a_url_and_the_sentinel(
    upstream: UpstreamServer,
) -> None:
    key, events = canary(), Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": key}, [cred], events) as broker:
        env = broker.agent_env()
        assert env["OPENAI_API_KEY"] == SENTINEL_KEY
        assert env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:")
        reply = request(
            env["OPENAI_BASE_URL"],
            "POST",
            path="/v1/echo?stream=true",
            body=b'{"model": "m"}',
            headers={"Authorization": f"Bearer {SENTINEL_KEY}", "Content-Type": "application/json"},
        )
    assert reply.status == 200
    received = upstream.requests[0]
    assert received.headers["Authorization"] == f"Bearer {key}"
    assert received.path == "/v1/echo?stream=true"
    assert received.body == b'{"model": "m"}'
    # the upstream echoed the key back; the agent gets it scrubbed
    assert reply.json()["headers"]["Authorization"] == "Bearer ***"
    assert_no_leak(key, reply.body, repr(reply.headers), repr(env), events.dump())
    [event] = events.named("proxy_request")
    assert event["name"] == "openai"
    assert event["method"] == "POST"
    assert event["host"] == f"127.0.0.1:{upstream.port}"
    # no query string (it may carry data), no capability
    assert event["path"] == "/v1/echo"
    assert event["status"] == 200
    assert event["bytes"] == len(reply.body)
    assert event["duration_ms"] >= 0
    capability = env["OPENAI_BASE_URL"].rsplit("/", 2)[1]
    assert capability not in events.dump()


def test_header_and_scheme_are_configurable(upstream: UpstreamServer) -> None:
    key = canary()
    cred = proxy_cred(
        "anthropic", upstream.url, env="ANTHROPIC_BASE_URL", header="x-api-key", scheme=""
    )
    with started_broker({"anthropic": key}, [cred], Events()) as broker:
        env = broker.agent_env()
        assert env["ANTHROPIC_API_KEY"] == SENTINEL_KEY
        reply = request(env["ANTHROPIC_BASE_URL"], "POST", path="/v1/echo", body=b"{}")
    assert reply.status == 200
    headers = upstream.requests[0].headers
    assert headers["x-api-key"] == key
    assert "Authorization" not in headers


def test_auth_headers_the_agent_sends_never_reach_the_upstream(upstream: UpstreamServer) -> None:
    key = canary()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    sent = {
        "Authorization": "Bearer agent-own-key",
        "Proxy-Authorization": "Basic YWdlbnQ6b3du",
        "X-Api-Key": "agent-own-key",
        "Api-Key": "agent-own-key",
        "X-Goog-Api-Key": "agent-own-key",
        "Cookie": "session=agent-own-key",
        "Connection": "X-Smuggle",
        "X-Smuggle": "agent-own-key",
        "X-Ordinary": "kept",
    }
    with started_broker({"openai": key}, [cred], Events()) as broker:
        reply = request(broker.agent_env()["OPENAI_BASE_URL"], path="/echo", headers=sent)
    assert reply.status == 200
    received = upstream.requests[0].headers
    assert "agent-own-key" not in repr(received)
    assert received["Authorization"] == f"Bearer {key}"
    assert received["X-Ordinary"] == "kept"


def test_the_proxy_keeps_no_cookies_of_the_upstreams(upstream: UpstreamServer) -> None:
    """A cookie the upstream sets goes to the agent (its own to send, or not); the proxy
    never stores one and sends it on later requests, as a client's cookie jar would.

    By a host name: aiohttp's default jar keeps no cookies of an IP address's.
    """
    cred = proxy_cred("api", upstream.url.replace("127.0.0.1", "localhost"), env="API_BASE_URL")
    with started_broker({"api": canary()}, [cred], Events()) as broker:
        base = broker.agent_env()["API_BASE_URL"]
        set_reply = request(base, path="/cookie?set=session%3Dfrom-upstream%3B%20Path%3D%2F")
        assert ("Set-Cookie", "session=from-upstream; Path=/") in set_reply.headers
        assert request(base, path="/echo").status == 200
    assert [r.headers.get("Cookie") for r in upstream.requests] == [None, None]


def test_only_allowed_method_and_path_pass(upstream: UpstreamServer) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL", allow=("POST /v1/*",))
    with started_broker({"openai": canary()}, [cred], events) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]
        assert request(base, "POST", path="/v1/echo", body=b"{}").status == 200
        assert request(base, "GET", path="/v1/echo").status == 403
        assert request(base, "POST", path="/v2/echo", body=b"{}").status == 403
        assert request(base, "POST", path="/v1/../v2/echo", body=b"{}").status == 400
        assert request(base, "POST", path="/v1/%2e%2e/v2/echo", body=b"{}").status == 400
        assert request(base, "POST", path="/v1/a%2F..%2F..%2Fv2/echo", body=b"{}").status == 400
    assert len(upstream.requests) == 1
    assert events.reasons() == ["route_not_allowed", "route_not_allowed"] + ["bad_path"] * 3


def test_upstream_base_path_is_kept_and_cannot_be_left(upstream: UpstreamServer) -> None:
    cred = proxy_cred("api", upstream.url + "/api", env="API_BASE_URL")
    with started_broker({"api": canary()}, [cred], Events()) as broker:
        base = broker.agent_env()["API_BASE_URL"]
        assert request(base, path="/echo").status == 200
        assert request(base, path="/../echo").status == 400
    assert [r.path for r in upstream.requests] == ["/api/echo"]


def test_server_sent_events_stream_before_the_upstream_finishes(upstream: UpstreamServer) -> None:
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        parts = urllib.parse.urlsplit(broker.agent_env()["OPENAI_BASE_URL"])
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=5)
        conn.request("POST", parts.path + "/v1/sse?n=3", body=b"{}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        first = b""
        while not first.endswith(b"\n\n"):
            first += response.read1(65536)
        # the upstream is still holding back events 1 and 2 at this point
        assert not upstream.state.release.is_set()
        assert first == b'event: message\ndata: {"n": 0}\n\n'
        upstream.state.release.set()
        rest = response.read()
        conn.close()
    assert rest == b'event: message\ndata: {"n": 1}\n\nevent: message\ndata: {"n": 2}\n\n'


def test_chunked_bodies_arrive_whole(upstream: UpstreamServer) -> None:
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        reply = request(broker.agent_env()["OPENAI_BASE_URL"], path="/chunked?n=50&size=30000")
    assert reply.status == 200
    assert reply.body == b"x" * 1_500_000


def test_a_large_stream_is_scrubbed_where_the_key_straddles_every_read(
    upstream: UpstreamServer,
) -> None:
    """Megabytes in reads of every size: the proxy's large batches change nothing."""
    key = canary()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    chunks = 40
    with started_broker({"openai": key}, [cred], Events()) as broker:
        reply = request(
            broker.agent_env()["OPENAI_BASE_URL"],
            path=f"/bulkleak?n={chunks}&size=200000",
            timeout=30,
        )
    assert reply.status == 200
    assert_no_leak(key, reply.body, reply.body.swapcase())
    assert key.swapcase().encode() not in reply.body
    assert reply.body.count(REPLACEMENT) >= chunks - 1
    # byte for byte what masking the whole body at once gives: nothing else touched
    sent = request(
        upstream.url,
        path=f"/bulkleak?n={chunks}&size=200000",
        headers={"Authorization": upstream.requests[-1].headers["Authorization"]},
        timeout=30,
    )
    assert reply.body == Redactor([key]).redact_bytes(sent.body)
    assert len(sent.body) == 200_000 * chunks


def test_gzip_responses_are_decoded_so_they_can_be_scrubbed(upstream: UpstreamServer) -> None:
    key = canary()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": key}, [cred], Events()) as broker:
        reply = request(broker.agent_env()["OPENAI_BASE_URL"], path="/gzip")
    assert reply.text == "you sent Bearer ***\n"
    assert reply.header("Content-Encoding") is None


def test_concurrent_requests(upstream: UpstreamServer) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], events) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]

        def call(n: int) -> tuple[int, str]:
            reply = request(base, "POST", path=f"/echo?n={n}", body=f"body {n}".encode())
            return reply.status, reply.json()["body"]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(48)))
    assert results == [(200, f"body {n}") for n in range(48)]
    assert len(events.named("proxy_request")) == 48


def test_https_upstream_with_a_private_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    key = canary()
    with UpstreamServer(pki.server_context()) as upstream:
        cred = proxy_cred("private", upstream.url, env="PRIVATE_BASE_URL", ca_bundle="certs/ca.pem")
        events = Events()
        with started_broker(
            {"private": key}, [cred], events, ca_bundles={"certs/ca.pem": pki.ca_pem}
        ) as broker:
            reply = request(broker.agent_env()["PRIVATE_BASE_URL"], path="/echo")
        assert reply.status == 200
        assert upstream.requests[0].headers["Authorization"] == f"Bearer {key}"
        # without the CA the system trust store does not know this upstream
        plain = proxy_cred("private", upstream.url, env="PRIVATE_BASE_URL")
        with started_broker({"private": key}, [plain], events) as broker:
            refused = request(broker.agent_env()["PRIVATE_BASE_URL"], path="/echo")
        assert refused.status == 502
        assert "certificate" in refused.text and "ca_bundle" in refused.text
        assert len(upstream.requests) == 1
        assert_no_leak(key, refused.body, events.dump())


def test_a_missing_ca_bundle_and_plain_http_to_a_remote_host_are_refused_at_start() -> None:
    cred = proxy_cred("x", "https://127.0.0.1:9", env="X_BASE_URL", ca_bundle="ca.pem")
    with pytest.raises(CouldNotRun, match=r"ca_bundle ca\.pem"):
        started_broker({"x": "k" * 20}, [cred], Events()).__enter__()
    remote = proxy_cred("x", "http://api.example.com", env="X_BASE_URL")
    with pytest.raises(CouldNotRun, match="plain http"):
        started_broker({"x": "k" * 20}, [remote], Events()).__enter__()


def test_a_redirect_on_the_upstream_comes_back_through_the_proxy(
    upstream: UpstreamServer,
) -> None:
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]
        target = urllib.parse.quote(f"{upstream.url}/v1/echo?x=1", safe="")
        reply = request(base, path=f"/redirect?to={target}")
    assert reply.status == 302
    assert reply.header("Location") == f"{base}/v1/echo?x=1"
    # not followed by the proxy
    assert len(upstream.requests) == 1


def test_the_proxy_refuses_what_a_forward_proxy_would_do(upstream: UpstreamServer) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], events) as broker:
        port = broker.proxy_port
        assert port is not None
        connect = raw_exchange(
            port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % upstream.port
        )
        absolute = raw_exchange(
            port, f"GET {upstream.url}/echo HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
    assert connect.startswith(b"HTTP/1.1 405")
    assert absolute.startswith(b"HTTP/1.1 400")
    assert upstream.requests == []
    assert events.reasons() == ["connect_refused", "absolute_uri_refused"]


def test_redactor_catches_secrets_split_at_every_chunk_boundary() -> None:
    key = canary()
    redactor = Redactor([key])
    import base64

    for form in (key, base64.b64encode(b"user:" + key.encode()).decode(), key.encode().hex()):
        message = f"data: {{'k': '{form}'}}\n\n".encode()
        for cut in range(1, len(message)):
            stream = redactor.stream()
            out = stream.feed(message[:cut]) + stream.feed(message[cut:]) + stream.flush()
            assert_no_leak(key, out)
            assert REPLACEMENT in out


def test_redactor_holds_back_nothing_that_cannot_start_a_secret() -> None:
    stream = Redactor([canary()]).stream()
    event = b'event: message\ndata: {"n": 0}\n\n'
    # an SSE event goes out whole at once: its end cannot be the start of a key
    assert stream.feed(event) == event
    partial = stream.feed(b"text then sk-can")
    assert partial == b"text then "
    assert stream.flush() == b"sk-can"


def test_first_event_passes_while_the_upstream_still_holds_the_rest(
    upstream: UpstreamServer,
) -> None:
    """A proxy that buffered for redaction would wait for the held events: no timing needed.

    The upstream sends one event, then holds the rest until ``release`` is set, which
    happens only after the first event has reached the client through the proxy.
    """
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        parts = urllib.parse.urlsplit(broker.agent_env()["OPENAI_BASE_URL"])
        # generous: this bounds a broken proxy's wait, it is not what the test measures
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=60)
        conn.request("GET", parts.path + "/sse?n=2")
        response = conn.getresponse()
        first = response.read1(65536)
        held_when_first_arrived = not upstream.state.release.is_set()
        upstream.state.release.set()
        rest = response.read()
        conn.close()
    assert first.startswith(b"event: message\ndata: ")
    assert held_when_first_arrived
    assert rest.count(b"data: ") + first.count(b"data: ") == 2


def test_status_and_headers_pass_before_the_stream_has_a_first_event(
    upstream: UpstreamServer,
) -> None:
    """The headers wait for body bytes only when those are already there, never for the upstream."""
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        parts = urllib.parse.urlsplit(broker.agent_env()["OPENAI_BASE_URL"])
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=60)
        conn.request("GET", parts.path + "/sse?n=2&hold=0")
        response = conn.getresponse()
        events_when_headers_arrived = upstream.state.sse_events
        upstream.state.release.set()
        body = response.read()
        conn.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    assert events_when_headers_arrived == 0
    assert body.count(b"data: ") == 2


def test_loop_only_credentials_the_policy_granted_get_a_route(upstream: UpstreamServer) -> None:
    asked = [
        proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL"),
        proxy_cred("crm", upstream.url, env="CRM_BASE_URL"),
    ]
    with started_broker({"openai": canary()}, asked, Events()) as broker:
        env = broker.agent_env()
    assert "OPENAI_BASE_URL" in env
    assert "CRM_BASE_URL" not in env


def test_head_and_empty_bodies_pass_through(upstream: UpstreamServer) -> None:
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]
        head = request(base, "HEAD", path="/bytes?n=10")
        missing = request(base, path="/nothing-here")
    assert (head.status, head.body) == (200, b"")
    assert (missing.status, missing.body) == (404, b"not found\n")


def test_a_secret_with_a_line_break_is_refused_before_it_reaches_a_header() -> None:
    cred = proxy_cred("x", "https://api.example.com", env="X_BASE_URL")
    with pytest.raises(CouldNotRun, match="line break"):
        started_broker({"x": "sk-abcdefgh\n"}, [cred], Events()).__enter__()


def test_expect_100_continue_is_answered_after_admission(upstream: UpstreamServer) -> None:
    import socket

    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL")
    with started_broker({"openai": canary()}, [cred], Events()) as broker:
        route = urllib.parse.urlsplit(broker.agent_env()["OPENAI_BASE_URL"])
        with socket.create_connection(("127.0.0.1", route.port or 0), timeout=5) as sock:
            sock.sendall(
                f"POST {route.path}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n".encode()
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(b"hello")
            reply = b""
            while b'"body": "hello"' not in reply:
                chunk = sock.recv(65536)
                assert chunk
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")


def test_override_headers_are_dropped_and_recorded(upstream: UpstreamServer) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL", allow=("GET /v1/*",))
    sent = {
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
        "X-HTTP-Method-Override": "DELETE",
        "X-Method-Override": "DELETE",
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Host": "admin.internal",
        "X-Forwarded-Prefix": "/admin",
        "Forwarded": "for=10.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "X-Middleware-Subrequest": "middleware",
        "X-Ordinary": "kept",
    }
    with started_broker({"openai": canary()}, [cred], events) as broker:
        reply = request(broker.agent_env()["OPENAI_BASE_URL"], path="/v1/echo", headers=sent)
    assert reply.status == 200
    received = {k.lower(): v for k, v in upstream.requests[0].headers.items()}
    assert received["x-ordinary"] == "kept"
    for name in sent:
        if name != "X-Ordinary":
            assert name.lower() not in received, name
    [event] = events.named("proxy_request")
    assert set(event["dropped_headers"]) == {n.lower() for n in sent} - {"x-ordinary"}


def test_a_method_override_in_the_query_is_refused(upstream: UpstreamServer) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL", allow=("POST /v1/*",))
    with started_broker({"openai": canary()}, [cred], events) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]
        for query in ("_method=DELETE", "a=1&_METHOD=put", "x-http-method-override=DELETE"):
            assert request(base, "POST", path=f"/v1/echo?{query}", body=b"{}").status == 400
        assert request(base, "POST", path="/v1/echo?method=fine", body=b"{}").status == 200
    assert events.reasons() == ["method_override_refused"] * 3
    assert len(upstream.requests) == 1


def test_the_path_forwarded_is_the_one_judged(upstream: UpstreamServer) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url + "/v1", env="OPENAI_BASE_URL", allow=("GET /v1/*",))
    with started_broker({"openai": canary()}, [cred], events) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]
        assert request(base, path="//%7Emodels//echo?x=%2F").status == 200
        refused = request(base, path="/..;/admin/echo")
    assert [r.path for r in upstream.requests] == ["/v1/~models/echo?x=%2F"]
    assert refused.status == 400
    assert (
        refused.text == "outloop proxy: refused (bad_path: a ; parameter in the path "
        "(some servers drop what follows it))\n"
    )
    [denied] = events.named("credential_denied")
    assert denied["detail"].startswith("a ; parameter")


def test_a_refusal_keeps_only_a_short_part_of_what_the_agent_typed(
    upstream: UpstreamServer,
) -> None:
    events = Events()
    cred = proxy_cred("openai", upstream.url, env="OPENAI_BASE_URL", allow=("GET /v1/*",))
    with started_broker({"openai": canary()}, [cred], events) as broker:
        base = broker.agent_env()["OPENAI_BASE_URL"]
        token = base.rsplit("/", 2)[1]
        assert request(base, path="/v2/" + "a" * 6000).status == 403
        route = base.rsplit("/", 2)[0]
        assert request(f"{route}/{token}/{'n' * 3000}/x").status == 403
    long_path, long_name = events.named("credential_denied")
    assert len(long_path["path"]) == 300
    assert len(long_name["name"]) == 100
