"""OpenTelemetry traces for API requests and reconcile decisions, on only when an OTLP endpoint is set.

With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) unset, nothing is installed and
the tracer is the API's no-op one: a span costs a function call. The exporter reads the standard `OTEL_*`
variables itself (headers, timeouts, `OTEL_SERVICE_NAME`), so an operator configures it the usual way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

__all__ = ["enabled", "install", "span"]

_tracer = trace.get_tracer("optio")
_lock = threading.Lock()
_provider: Any = None


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def install(app: Any, *, version: str) -> bool:
    """Export spans over OTLP/HTTP and trace every request of `app`; False (and nothing done) when no
    endpoint is configured."""
    global _provider
    if not enabled():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    with _lock:
        if _provider is None:
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "optio",
                                        "service.version": version})
            _provider = TracerProvider(resource=resource)
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(_provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="/api/health,/metrics")
    return True


def shutdown() -> None:
    """Flush what is buffered (a stopping server sends its last spans)."""
    with _lock:
        if _provider is not None:
            _provider.shutdown()


@contextmanager
def span(name: str, attributes: dict[str, str | int | float | bool] | None = None) -> Iterator[Any]:
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
