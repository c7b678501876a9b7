"""OpenTelemetry export of a run: a trace per run, a span per iteration (off unless configured).

- ``settings``: whether the standard ``OTEL_*`` variables ask for export, read without
  importing OpenTelemetry.
- ``export``: the process's one tracer provider and OTLP/HTTP exporter, flushed at each run's end.
- ``run_trace``: a run's observer events turned into spans.
- ``observer``: the one call the engine makes.
"""
