"""When the OTEL_* variables turn export on, and what outloop shows of the endpoint."""

from __future__ import annotations

import pytest

from outloop_cli.process.environment import build_env, is_credential_name
from outloop_cli.telemetry.settings import read_settings, shown_endpoint


def test_off_without_an_endpoint_even_with_a_service_name() -> None:
    assert not read_settings({}).enabled
    assert not read_settings(
        {"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"}
    ).enabled
    assert not read_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}).enabled


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/"}, "http://c:4318/base/v1/traces"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t/x",
            },
            "https://t/x",
        ),
    ],
)
def test_the_endpoint_follows_the_specification(env: dict[str, str], shown: str) -> None:
    settings = read_settings(env)
    assert settings.enabled
    assert settings.endpoint_shown == shown


def test_the_sdk_switches_turn_it_off() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert not read_settings({**base, "OTEL_SDK_DISABLED": "TRUE"}).enabled
    assert not read_settings({**base, "OTEL_TRACES_EXPORTER": "none"}).enabled


def test_grpc_is_refused_with_a_warning() -> None:
    settings = read_settings(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert not settings.enabled
    assert settings.warning is not None and "http/protobuf" in settings.warning


def test_the_timeout_is_in_milliseconds_and_short_by_default() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert read_settings(base).export_timeout == 3.0
    assert read_settings({**base, "OTEL_EXPORTER_OTLP_TIMEOUT": "1500"}).export_timeout == 1.5
    traces_first = {
        **base,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "9000",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "500",
    }
    assert read_settings(traces_first).export_timeout == 0.5
    assert read_settings({**base, "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}).export_timeout == 3.0


def test_the_shown_endpoint_drops_what_may_be_secret() -> None:
    assert (
        shown_endpoint("https://u:pw@c.example:443/v1/traces?key=k#f")
        == "https://c.example:443/v1/traces"
    )
    assert shown_endpoint("http://[::1]:4318/v1/traces") == "http://[::1]:4318/v1/traces"


@pytest.mark.parametrize(
    "name",
    [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "otel_exporter_otlp_logs_headers",
    ],
)
def test_the_exporters_headers_are_a_credential_the_agent_never_gets(name: str) -> None:
    assert is_credential_name(name)
    env = build_env(pass_env=[name], source={name: "api-key=k", "PATH": "/bin"})
    assert name not in env


def test_other_otel_variables_may_be_passed() -> None:
    assert not is_credential_name("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert not is_credential_name("OTEL_SERVICE_NAME")
