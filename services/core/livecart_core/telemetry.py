"""Tracing set-up and trace-context propagation across HTTP, gRPC and bus headers.

One SDK TracerProvider per process. It exports over OTLP only when an endpoint is configured;
otherwise spans are still created (so trace ids reach the logs and other processors, such as a
test's in-memory exporter, can be attached), but nothing leaves the process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def setup_tracing(service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install the process-wide TracerProvider once; later calls return it unchanged."""
    global _configured
    current = trace.get_tracer_provider()
    if _configured and isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


@functools.cache
def tracer(name: str) -> trace.Tracer:
    """The tracer for ``name``, looked up once: the SDK lookup costs ~25 µs, too much per event.

    Before :func:`setup_tracing` this is OpenTelemetry's proxy, which follows the provider once set.
    """
    return trace.get_tracer(name)


def inject_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka-style headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def inject_metadata() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def extract_context(
    headers: Iterable[tuple[str, bytes | str]] | Mapping[str, str] | None,
) -> otel_context.Context:
    """A context whose parent is the span named in ``headers`` (bytes or str values); values
    that are not text (binary metadata, a stranger's Kafka headers) are not trace context."""
    carrier: dict[str, str] = {}
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
        for key, value in items:
            if isinstance(value, bytes):
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    continue
            carrier[key.lower()] = value
    return propagate.extract(carrier)
