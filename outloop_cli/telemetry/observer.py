"""The one call the engine makes: its observer, with a run's trace in front when export is on.

Without the ``OTEL_*`` variables this returns the observer it was given and
imports nothing of OpenTelemetry. With them, each event first becomes spans
(``run_trace``), then goes on to the progress view as before; a failure of
telemetry never reaches the run, and a collector that could not be reached is
told once, as a note, when the run ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from outloop_cli.engine.events import Event, Observer
from outloop_cli.telemetry.settings import read_settings

if TYPE_CHECKING:
    from outloop_cli.engine.plan import LoopPlan
    from outloop_cli.store.records import RunRecord
    from outloop_cli.telemetry.run_trace import RunTrace

_warned = threading.Event()


def run_workspace(plan: LoopPlan) -> str | None:
    """The policy's workspace of the run's repository, when it has one."""
    granted = getattr(plan.access.grants, "workspace", None)
    return str(granted) if granted else plan.egress.workspace


def traced_observer(
    observer: Observer, plan: LoopPlan, record_of: Callable[[], RunRecord | None]
) -> Observer:
    settings = read_settings()
    if not settings.enabled:
        if settings.warning is None:
            return observer
        return _warn_once(observer, settings.warning)
    try:
        from outloop_cli.telemetry.export import exporting
        from outloop_cli.telemetry.run_trace import RunTrace
    except ImportError:
        return _warn_once(
            observer,
            "telemetry is off: OTEL_EXPORTER_OTLP_*ENDPOINT is set but OpenTelemetry is not "
            "installed (pip install 'outloop[otel]')",
        )
    try:
        run_trace = RunTrace(
            exporting(settings),
            record_of,
            workspace=run_workspace(plan),
            agent_label=plan.agent.label,
        )
    except Exception as exc:
        return _warn_once(observer, f"telemetry is off: {type(exc).__name__} setting it up")
    return _Traced(observer, run_trace, settings.endpoint_shown)


class _Traced:
    def __init__(self, observer: Observer, run_trace: RunTrace, endpoint: str) -> None:
        self._observer = observer
        self._trace = run_trace
        self._endpoint = endpoint

    def __call__(self, event: Event) -> None:
        try:
            self._trace.on_event(event)
        except Exception:
            # spans are a courtesy to the user's tools: the run goes on without them
            self._trace.finished = True
        if event.kind == "run_stopped" and self._trace.failed_to_export():
            self._observer(_note(event, f"telemetry: could not send spans to {self._endpoint}"))
        self._observer(event)


def _note(event: Event, message: str) -> Event:
    return Event(
        kind="note",
        run_id=event.run_id,
        loop=event.loop,
        iteration=event.iteration,
        max_iterations=event.max_iterations,
        message=message,
        elapsed=event.elapsed,
    )


def _warn_once(observer: Observer, warning: str) -> Observer:
    def observe(event: Event) -> None:
        if event.kind == "run_started" and not _warned.is_set():
            _warned.set()
            observer(_note(event, "warning: " + warning))
        observer(event)

    return observe
