"""The process's one tracer provider: spans batched and sent as OTLP/HTTP protobuf.

Imported only once the ``OTEL_*`` variables ask for export (``observer.py``), so
a run without them never loads OpenTelemetry. The SDK's batch processor sends
from a thread of its own and the OTLP exporter retries as the specification
says; what is added here is bounded waiting: a run's end waits for its spans at
most one export timeout, and so does the process's exit, so a collector that is
down or hangs never holds a run up for long and never fails it.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Tracer

from outloop_cli import __version__
from outloop_cli.telemetry.settings import TelemetrySettings

INSTRUMENTATION_NAME = "outloop"


class _CountingExporter(SpanExporter):
    """The OTLP exporter, counting what did not get through (for one note per run)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.failed_batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            with self._lock:
                self.failed_batches += 1
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def run_trace_id(run_id: str) -> int:
    """The trace id of a run: the same for the run and every resume of it.

    A resumed run is the same piece of work, so its spans join the trace its
    first runner began; nothing needs to be stored for that, and a runner
    killed before it could store anything still shares the trace.
    """
    digest = hashlib.sha256(b"outloop.run\0" + run_id.encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1


class _RunTraceIds(IdGenerator):
    """Random ids, except the trace id of a run's root span (``root_trace_id``)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._pending = threading.local()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        wanted: int | None = getattr(self._pending, "trace_id", None)
        return wanted if wanted is not None else self._random.generate_trace_id()

    @contextmanager
    def root_trace_id(self, trace_id: int) -> Iterator[None]:
        # the SDK asks for a root span's trace id inside start_span, on the calling
        # thread: runs of --jobs on other threads keep their own
        self._pending.trace_id = trace_id
        try:
            yield
        finally:
            self._pending.trace_id = None


def _resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the SDK reads them; else ``outloop``."""
    from_env = Resource.create()
    ours: dict[str, str] = {}
    if str(from_env.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        ours[SERVICE_NAME] = "outloop"
    if SERVICE_VERSION not in from_env.attributes:
        ours[SERVICE_VERSION] = __version__
    return from_env.merge(Resource(ours)) if ours else from_env


class Exporting:
    """One provider, one batch processor, one exporter for every run of the process."""

    def __init__(self, settings: TelemetrySettings) -> None:
        # the SDK logs each failed export to stderr, under the live progress view;
        # a run says once, as a note, that its spans did not get through
        quiet = logging.getLogger("opentelemetry")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        self.settings = settings
        self._exporter = _CountingExporter(OTLPSpanExporter(timeout=settings.export_timeout))
        self._processor = BatchSpanProcessor(
            self._exporter, export_timeout_millis=settings.export_timeout * 1000
        )
        # shutdown at exit is ours, bounded; the SDK's own would wait up to 30 s
        self.ids = _RunTraceIds()
        self._provider = TracerProvider(
            resource=_resource(), shutdown_on_exit=False, id_generator=self.ids
        )
        self._provider.add_span_processor(self._processor)
        self.tracer: Tracer = self._provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        atexit.register(self.shutdown)

    @property
    def failed_batches(self) -> int:
        return self._exporter.failed_batches

    def flush(self) -> None:
        """Send what is queued; wait at most about one export timeout, never fail."""
        self._bounded(self._processor.force_flush, "outloop-otel-flush")

    def shutdown(self) -> None:
        self._bounded(self._processor.shutdown, "outloop-otel-shutdown")

    def _bounded(self, call: Callable[[], object], name: str) -> None:
        # the SDK's flush and shutdown block for as long as the exports they wait on
        # take (their timeouts are not applied): on a thread of their own, the run
        # waits only as long as it should, and an unfinished export dies with the process
        worker = threading.Thread(target=call, name=name, daemon=True)
        try:
            worker.start()
        except RuntimeError:
            # no new threads once the interpreter is shutting down (3.12+, at exit): the
            # SDK's own wait is bounded too, by the exporter's timeout per batch
            call()
            return
        worker.join(self.settings.export_timeout + 0.5)


_lock = threading.Lock()
_exporting: Exporting | None = None


def exporting(settings: TelemetrySettings) -> Exporting:
    """The process's exporter, made on first use (runs of ``--jobs`` share it)."""
    global _exporting
    with _lock:
        if _exporting is None:
            _exporting = Exporting(settings)
        return _exporting
