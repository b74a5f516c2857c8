"""The buy button's route, lean: ``POST /v1/flash-sales/{sale_id}/reservations`` as plain ASGI.

In a flash sale every viewer presses buy in the same second, so this one route is the queue in
front of the engine. Through FastAPI it cost about 0.45 ms of CPU a request (the server span and
middleware around every request, routing past every other route, dependency solving, pydantic
in and out); the engine's group commit settles a reservation for a tenth of that.
:class:`BuyPath` is served ahead of the FastAPI app and answers a well-formed reservation
itself, behind the same HTTP boundary (:mod:`livecart_core.boundary`), with the same rules
(the route's own body model and Idempotency-Key type, the shared token check) and the same
engine call and answer (``api.reserve_order``). Whatever it is not sure of (an id, header,
body or token that is not plainly good) goes on to the declared FastAPI route with its body
intact, so the refusals of bad input come from one place, documented in OpenAPI there.

Spans: FastAPI's telemetry is skipped with the rest, so a server span is made here only for a
request that carries trace context (``traceparent``); a crowd of browsers does not.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping

from opentelemetry.trace import SpanKind
from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecart_commerce.api import BUY, ReservationIn, reserve_order
from livecart_commerce.flash_sale import FlashSaleEngine
from livecart_commerce.idempotency import IdempotencyKey
from livecart_core.auth import Principal, TokenAuthority
from livecart_core.boundary import ERROR_CODES, BoundaryMiddleware, Limits, RequestRefused
from livecart_core.errors import ServiceError
from livecart_core.metrics import HTTP_REQUESTS, HTTP_SECONDS
from livecart_core.telemetry import extract_context, tracer

ROUTE = "/v1/flash-sales/{sale_id}/reservations"
_PREFIX, _SUFFIX = ROUTE.split("{sale_id}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PATH_LENGTH = len(_PREFIX) + 36 + len(_SUFFIX)
# A reservation body is ``{"quantity": n}``: a longer one is left to the declared route.
MAX_BODY = 1024
_KEY = TypeAdapter(IdempotencyKey)


class _Request:
    __slots__ = ("key", "quantity", "sale_id", "token", "traced")

    def __init__(
        self, sale_id: uuid.UUID, token: str, quantity: int, key: str, traced: bool
    ) -> None:
        self.sale_id, self.token, self.quantity, self.key = sale_id, token, quantity, key
        self.traced = traced


class BuyPath:
    """ASGI app served ahead of FastAPI: the lean reservation route; all else passed on."""

    def __init__(
        self,
        app: ASGIApp,
        engine: FlashSaleEngine,
        tokens: TokenAuthority,
        service: str,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.tokens = tokens
        self.service = service
        self._guarded = BoundaryMiddleware(self._reserve, limits or Limits())
        self._seconds = HTTP_SECONDS.labels(service, "POST", ROUTE)
        self._counted: dict[int, Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and len(path) == _PATH_LENGTH
            and path.startswith(_PREFIX)
            and path.endswith(_SUFFIX)
        ):
            await self._guarded(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _reserve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        chunks: list[bytes] = []
        size, more = 0, True
        try:
            while more and size <= MAX_BODY:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away before its body came
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
        except RequestRefused as refused:  # the boundary's 400/408/413
            status = refused.status_code
            code = ERROR_CODES.get(status, "refused")
            await _send_error(send, status, code, str(refused.detail), refused.headers)
            return
        request = None if more else self._request(scope, b"".join(chunks))
        if request is None:
            await self.app(scope, _replay(chunks, more, receive), send)
            return
        try:
            caller = self.tokens.verify(request.token)
            caller.require(BUY)
        except ServiceError:
            # Refused by the declared route, in its order of checks, in its words.
            await self.app(scope, _replay(chunks, more, receive), send)
            return
        if request.traced:
            with tracer(__name__).start_as_current_span(
                f"POST {ROUTE}",
                context=extract_context([(k.decode("latin-1"), v) for k, v in scope["headers"]]),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.route": ROUTE},
            ) as span:
                status = await self._answer(caller, request, send)
                span.set_attribute("http.response.status_code", status)
        else:
            status = await self._answer(caller, request, send)
        counted = self._counted.get(status)
        if counted is None:  # a label lookup costs more than the increment
            counted = self._counted[status] = HTTP_REQUESTS.labels(
                self.service, "POST", ROUTE, str(status)
            )
        counted.inc()
        self._seconds.observe(time.perf_counter() - started)

    async def _answer(self, caller: Principal, request: _Request, send: Send) -> int:
        try:
            order = await reserve_order(
                self.engine, caller, request.sale_id, request.quantity, request.key
            )
        except ServiceError as refused:
            await _send_error(send, refused.http_status, refused.code, str(refused))
            return refused.http_status
        await _send_json(send, 201, order.model_dump_json().encode())
        return 201

    @staticmethod
    def _request(scope: Scope, body: bytes) -> _Request | None:
        """A well-formed reservation; None for anything the declared route should judge."""
        sale = scope["path"][len(_PREFIX) : len(_PREFIX) + 36]
        if not _UUID.fullmatch(sale) or scope.get("query_string"):
            return None
        authorization = key = content_type = None
        traced = False
        for name, value in scope["headers"]:  # ASGI header names are lower case
            if name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value
            elif name == b"idempotency-key":
                if key is not None:
                    return None
                key = value
            elif name == b"content-type":
                if content_type is not None:
                    return None
                content_type = value
            elif name == b"traceparent":
                traced = True
        if authorization is None or key is None or not body:
            return None
        if content_type is not None and content_type.lower() != b"application/json":
            return None
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not token or b" " in token:
            return None
        try:
            fields = json.loads(body)
            if not isinstance(fields, dict):
                return None
            quantity = ReservationIn.model_validate(fields).quantity
            key_text = _KEY.validate_python(key.decode("latin-1"))
        except (ValueError, ValidationError):
            return None
        return _Request(uuid.UUID(sale), token.decode("latin-1"), quantity, key_text, traced)


def _replay(chunks: list[bytes], more: bool, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the rest of the stream."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": more or i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _send_error(
    send: Send, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> None:
    """The error body every refusal has (``{"error": code, "message": ...}``)."""
    body = json.dumps({"error": code, "message": message}).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await _send_json(send, status, body, extra)


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
