"""An OTLP/HTTP trace receiver on 127.0.0.1 that decodes what it gets, as a collector would.

``POST /v1/traces`` (or any path: the test checks which one was used) with an
``application/x-protobuf`` body is parsed as an ``ExportTraceServiceRequest``
by the official ``opentelemetry-proto`` messages. Every byte of every request
(request line, headers, body) is kept for leak searches. ``mode="hang"``
accepts and reads a request but never answers until the receiver closes, the
way a collector stuck behind a dead load balancer does.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any]


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes
    spans: list[ReceivedSpan]


@dataclass
class _State:
    mode: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[ReceivedRequest] = field(default_factory=list)
    connections: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        status_code=int(span.status.code),
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        resource=resource,
                    )
                )
    return spans


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        raw = self.raw_requestline + self.headers.as_bytes() + body
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        payload = body
        if encoding == "gzip":
            payload = gzip.decompress(body)
        elif encoding == "deflate":
            payload = zlib.decompress(body)
        received = ReceivedRequest(
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw=raw,
            body=body,
            spans=decode(payload) if state.mode == "ok" else [],
        )
        with state.arrived:
            state.requests.append(received)
            state.arrived.notify_all()
        if state.mode == "hang":
            state.release.wait()
            return
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class OtlpReceiver:
    """``with OtlpReceiver() as otlp: otlp.url`` (``mode="hang"``: never answers)."""

    def __init__(self, mode: str = "ok") -> None:
        self.state = _State(mode=mode)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self.state.arrived:
            return list(self.state.requests)

    @property
    def spans(self) -> list[ReceivedSpan]:
        return [span for request in self.requests for span in request.spans]

    def raw_bytes(self) -> bytes:
        return b"".join(request.raw for request in self.requests)

    def wait_for_requests(self, count: int, timeout: float = 30) -> None:
        with self.state.arrived:
            if not self.state.arrived.wait_for(lambda: len(self.state.requests) >= count, timeout):
                raise AssertionError(
                    f"expected {count} OTLP request(s), got {len(self.state.requests)}"
                )

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.release.set()
        self._server.shutdown()
        self._server.server_close()
