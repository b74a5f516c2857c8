"""One trace from an HTTP request, through a gRPC call and a Kafka event, into the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from livecart_core.bus import Event, KafkaBus
from livecart_core.health import Readiness
from livecart_core.http import HttpServer, create_http_app
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.rpc import bind_grpc, create_channel, create_grpc_server
from livecart_core.telemetry import inject_metadata

METHOD = "/livecart.testing.Relay/Forward"
TOPIC = "test.tracing"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
async def kafka(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka_broker.bootstrap)
    await bus.start()
    yield bus
    await bus.stop()


async def test_trace_continues_from_http_through_grpc_and_kafka(
    spans: InMemorySpanExporter, kafka: KafkaBus
) -> None:
    # gRPC server whose method publishes an event (bytes in, bytes out: no stubs needed).
    async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await kafka.publish(TOPIC, "room-1", request)
        return b"ok"

    grpc_server = create_grpc_server("tracing-grpc", Readiness("tracing-grpc"))
    grpc_server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "livecart.testing.Relay",
                {"Forward": grpc.unary_unary_rpc_method_handler(forward)},
            )
        ]
    )
    port = bind_grpc(grpc_server, "127.0.0.1", 0)
    await grpc_server.start()
    channel = create_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(METHOD)

    app = create_http_app("tracing-http", Readiness("tracing-http"))

    @app.post("/go")
    async def go() -> dict[str, str]:
        reply = await call(b"hello")
        return {"reply": reply.decode()}

    http = HttpServer(app, "127.0.0.1", 0)
    serving = asyncio.create_task(http.serve())

    consumed: list[trace.SpanContext] = []

    async def handler(event: Event) -> None:
        consumed.append(trace.get_current_span().get_span_context())

    sub = await kafka.subscribe(TOPIC, "tracing", handler)
    try:
        while not http.started:
            await asyncio.sleep(0.01)
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("viewer click", kind=SpanKind.CLIENT) as root:
            headers = dict(inject_metadata())
            async with httpx.AsyncClient() as client:
                response = await client.post(f"http://127.0.0.1:{http.port}/go", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"reply": "ok"}
        deadline = asyncio.get_running_loop().time() + 20
        while not consumed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert consumed, "the event never reached the consumer"
    finally:
        await sub.stop()
        http.stop()
        await serving
        await channel.close()
        await grpc_server.stop(None)

    trace_id = root.get_span_context().trace_id
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    def one(kind: SpanKind, prefix: str) -> ReadableSpan:
        found = [s for s in mine if s.kind == kind and s.name.startswith(prefix)]
        assert len(found) == 1, [(s.name, s.kind) for s in mine]
        return found[0]

    http_server = one(SpanKind.SERVER, "POST /go")
    grpc_client = one(SpanKind.CLIENT, METHOD.lstrip("/"))
    grpc_server_span = one(SpanKind.SERVER, METHOD.lstrip("/"))
    producer = one(SpanKind.PRODUCER, f"publish {TOPIC}")
    consumer = one(SpanKind.CONSUMER, f"handle {TOPIC}")

    def parent_of(span: ReadableSpan) -> int:
        assert span.parent is not None, span.name
        return span.parent.span_id

    assert parent_of(http_server) == root.get_span_context().span_id
    assert parent_of(grpc_client) == http_server.context.span_id
    assert parent_of(grpc_server_span) == grpc_client.context.span_id
    assert parent_of(producer) == grpc_server_span.context.span_id
    assert parent_of(consumer) == producer.context.span_id
    assert consumed[0].span_id == consumer.context.span_id
