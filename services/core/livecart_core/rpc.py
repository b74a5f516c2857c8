"""gRPC (grpc.aio): the server factory (health, reflection, metrics and tracing interceptors)
and the client channel factory (deadlines, retries on UNAVAILABLE, trace propagation)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from livecart_core.bus.failures import is_transient
from livecart_core.errors import InvalidArgument, ServiceError, StartupError
from livecart_core.health import Readiness
from livecart_core.metrics import DEPENDENCY_UNAVAILABLE, GRPC_HANDLED, GRPC_SECONDS
from livecart_core.rules import text_problem
from livecart_core.telemetry import extract_context, inject_metadata, tracer

DEFAULT_DEADLINE_S = 5.0


@dataclass(frozen=True, slots=True)
class _Refused:
    """What the checked deserializer hands a method for a request it refuses."""

    reason: str


def _checked(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserialize``, turning corrupt bytes and text that cannot be stored (NUL in any string
    field) into a refusal the method answers with INVALID_ARGUMENT (gRPC itself would answer
    UNKNOWN, or the database would fail later)."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, whatever the message type
            return _Refused(f"the request is not a valid message: {exc}")
        # A NUL in a string field is a 0x00 byte on the wire, and protobuf refuses strings
        # that are not UTF-8 (so no lone surrogate) as it parses: bytes without 0x00 hold no
        # text to refuse, and the walk (per field, a cost on every call) is spared.
        if b"\x00" not in data or not isinstance(message, Message):
            return message
        problem = message_problem(message)
        return _Refused(problem) if problem else message

    return parse


def message_problem(message: Message) -> str | None:
    """Why a decoded message holds text that cannot be stored (livecart_core.rules); None when
    it holds none. Walks nested, repeated and map fields."""
    stack: list[tuple[str, Message]] = [("", message)]
    while stack:
        prefix, item = stack.pop()
        for field, value in item.ListFields():
            name = prefix + field.name
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                entries = list(value.items())
                texts = [k for k, _ in entries if isinstance(k, str)]
                texts += [v for _, v in entries if isinstance(v, str)]
                stack.extend((f"{name}.", v) for _, v in entries if isinstance(v, Message))
            elif field.is_repeated:
                texts = [v for v in value if isinstance(v, str)]
                stack.extend((f"{name}.", v) for v in value if isinstance(v, Message))
            elif isinstance(value, Message):
                stack.append((f"{name}.", value))
                continue
            else:
                texts = [value] if isinstance(value, str) else []
            for text in texts:
                problem = text_problem(text)
                if problem:
                    return f"{name}: {problem}"
    return None


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Refused):
            raise InvalidArgument(request.reason)
        yield request


class _ServerTelemetry(grpc.aio.ServerInterceptor):
    """A server span continuing the caller's trace, and call metrics, for every method; and
    the request boundary: corrupt or unstorable requests are INVALID_ARGUMENT."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        # Method handlers are untyped at this seam: behaviours are wrapped whatever their types.
        handler: Any = await continuation(details)
        if handler is None or details.method.startswith("/grpc.reflection."):
            return handler
        method = details.method
        parent = extract_context(details.invocation_metadata)
        service = self.service

        @contextlib.contextmanager
        def observed(context: Any) -> Iterator[None]:
            """Span, status and metrics around one call; ServiceErrors become their status."""
            started = time.perf_counter()
            with tracer("livecart.grpc").start_as_current_span(
                method.lstrip("/"),
                context=parent,
                kind=trace.SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method},
            ) as span:
                try:
                    yield
                except ServiceError as exc:
                    context.set_code(exc.grpc_status)
                    context.set_details(str(exc))
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    if not is_transient(exc):
                        context.set_code(grpc.StatusCode.INTERNAL)
                        raise
                    # A dependency is down: the caller may retry (its channel does, by itself).
                    DEPENDENCY_UNAVAILABLE.labels(service, "grpc").inc()
                    context.set_code(grpc.StatusCode.UNAVAILABLE)
                    context.set_details(f"a dependency is down ({type(exc).__name__}); retry")
                finally:
                    code = context.code() or grpc.StatusCode.OK
                    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
                    span.set_attribute("rpc.grpc.status_code", name)
                    GRPC_HANDLED.labels(service, method, name).inc()
                    GRPC_SECONDS.labels(service, method).observe(time.perf_counter() - started)

        inner: Any
        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def behaviour(request: Any, context: Any) -> Any:
                with observed(context):
                    if isinstance(request, _Refused):
                        raise InvalidArgument(request.reason)
                    if handler.stream_unary:
                        request = _checked_stream(request)
                    return await inner(request, context)
                return None  # a ServiceError was turned into the call's status

            factory = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
        else:
            inner = handler.unary_stream or handler.stream_stream

            async def behaviour(request: Any, context: Any) -> Any:  # type: ignore[misc]
                with observed(context):
                    if isinstance(request, _Refused):
                        raise InvalidArgument(request.reason)
                    if handler.stream_stream:
                        request = _checked_stream(request)
                    async for item in inner(request, context):
                        yield item

            factory = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler
            )
        return factory(
            behaviour,
            request_deserializer=_checked(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


def create_grpc_server(
    service: str,
    readiness: Readiness,
    *,
    reflection_names: Sequence[str] = (),
) -> grpc.aio.Server:
    """A grpc.aio server with health (driven by ``readiness``), reflection and telemetry.

    Register servicers on it, then call :func:`bind_grpc` and ``start()``.
    """
    server = grpc.aio.server(interceptors=[_ServerTelemetry(service)])
    health_pb2_grpc.add_HealthServicer_to_server(readiness.grpc_health, server)
    names = [
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
        *reflection_names,
    ]
    reflection.enable_server_reflection(names, server)
    return server


def bind_grpc(server: grpc.aio.Server, host: str, port: int) -> int:
    """Listen on ``host:port`` (0 picks a free port); returns the port."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise StartupError(
            f"LIVECART_GRPC_PORT={port}: cannot listen on {address} ({exc})"
        ) from None
    if bound == 0:
        raise StartupError(f"LIVECART_GRPC_PORT={port}: cannot listen on {address}")
    return int(bound)


class _ClientTelemetry(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """A client span per call, its context sent as metadata, and a default deadline."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in inject_metadata():
            metadata.add(key, value)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else self.deadline_s,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    def _span(self, details: grpc.aio.ClientCallDetails) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        return tracer("livecart.grpc").start_as_current_span(
            method.lstrip("/"),
            kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        with self._span(details) as span:
            call = await continuation(self._details(details), request)
            code = await call.code()
            span.set_attribute("rpc.grpc.status_code", code.name)
            return call

    async def intercept_unary_stream(
        self, continuation: Any, details: Any, request: Any
    ) -> AsyncIterator[Any]:
        with self._span(details):
            return await continuation(self._details(details), request)  # type: ignore[no-any-return]


def create_channel(
    target: str,
    *,
    deadline_s: float = DEFAULT_DEADLINE_S,
    max_attempts: int = 4,
) -> grpc.aio.Channel:
    """An insecure channel to another Livecart service.

    Every call gets ``deadline_s`` unless it sets its own; calls failing with UNAVAILABLE are
    retried by gRPC itself (exponential backoff) up to ``max_attempts``.
    """
    service_config = {
        # A name that resolves to several pods (a headless Service) spreads calls over all.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.enable_retries", 1),
        ],
        interceptors=[_ClientTelemetry(deadline_s)],
    )
