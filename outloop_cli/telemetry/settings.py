"""Whether the standard ``OTEL_*`` variables ask for trace export, read without OpenTelemetry.

Nothing here imports ``opentelemetry``: a run without the variables never loads it.
The exporter itself reads the endpoint, headers and resource variables the way
the OTLP exporter specification says (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as
is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` plus ``/v1/traces``; signal-specific
headers over the general ones); this module only decides whether to turn it on
and how long a run may wait for it.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_TIMEOUT = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT"
TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
SDK_DISABLED = "OTEL_SDK_DISABLED"
TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"

# A collector that is down must not hold a run up: one export (retries included) gives up
# after this long unless the user's OTEL_EXPORTER_OTLP_*TIMEOUT says otherwise. The SDK's
# own default (10 s) would add up to 20 s to the end of every run with a dead collector.
DEFAULT_EXPORT_TIMEOUT_SECONDS = 3.0
SUPPORTED_PROTOCOL = "http/protobuf"


@dataclass(frozen=True)
class TelemetrySettings:
    """Whether spans are exported, where to, and with what timeout, as the OTEL_* variables ask."""

    enabled: bool
    # where spans go, for messages: no user, password or query (they may carry a key)
    endpoint_shown: str = ""
    export_timeout: float = DEFAULT_EXPORT_TIMEOUT_SECONDS
    # a sentence when the variables ask for something outloop cannot do
    warning: str | None = None


def _timeout(environ: Mapping[str, str]) -> float:
    raw = (environ.get(TRACES_TIMEOUT) or environ.get(TIMEOUT) or "").strip()
    if not raw:
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    try:
        # the specification's unit is milliseconds
        millis = float(raw)
    except ValueError:
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    return millis / 1000 if millis > 0 else DEFAULT_EXPORT_TIMEOUT_SECONDS


def shown_endpoint(url: str) -> str:
    """The URL without what may be secret in it (user, password, query, fragment)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _trace_endpoint(environ: Mapping[str, str]) -> str:
    specific = environ.get(TRACES_ENDPOINT, "").strip()
    if specific:
        return specific
    base = environ.get(ENDPOINT, "").strip()
    return base.rstrip("/") + "/v1/traces"


def read_settings(environ: Mapping[str, str] | None = None) -> TelemetrySettings:
    """Export is on when an OTLP endpoint is set and neither the SDK nor trace export is off.

    A service name or resource attributes alone are no request to send anything:
    they are often set machine-wide for other programs.
    """
    env = os.environ if environ is None else environ
    if not (env.get(TRACES_ENDPOINT, "").strip() or env.get(ENDPOINT, "").strip()):
        return TelemetrySettings(enabled=False)
    if env.get(SDK_DISABLED, "").strip().lower() == "true":
        return TelemetrySettings(enabled=False)
    if env.get(TRACES_EXPORTER, "").strip().lower() == "none":
        return TelemetrySettings(enabled=False)
    endpoint = shown_endpoint(_trace_endpoint(env))
    protocol = (env.get(TRACES_PROTOCOL) or env.get(PROTOCOL) or SUPPORTED_PROTOCOL).strip()
    if protocol.lower() != SUPPORTED_PROTOCOL:
        return TelemetrySettings(
            enabled=False,
            endpoint_shown=endpoint,
            warning=f"telemetry is off: outloop exports OTLP over {SUPPORTED_PROTOCOL} only, "
            f"and the OTEL_EXPORTER_OTLP_*PROTOCOL variable asks for {protocol!r}",
        )
    return TelemetrySettings(enabled=True, endpoint_shown=endpoint, export_timeout=_timeout(env))
