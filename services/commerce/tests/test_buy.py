"""The buy button's lean route (``livecart_commerce.buy``) keeps the declared route's contract.

Against a real commerce process (Postgres, Kafka): the lean route answers well-formed
reservations and passes everything else on to the FastAPI route, body intact; a request with a
``charset`` on its Content-Type is one it passes on, so the two routes can be compared.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from livecart_commerce.app import SERVICE
from livecart_commerce.buy import MAX_BODY, BuyPath
from livecart_commerce.flash_sale import FlashSaleEngine
from livecart_commerce.settings import CommerceSettings
from livecart_core.boundary import Limits
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.service import Service
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

from .conftest import TOKENS, assert_refused, auth, create_flash_sale, new_sale

DECLARED = {"Content-Type": "application/json; charset=utf-8"}  # left to the FastAPI route
LEAN = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def raw(commerce_process: ServiceProcess) -> Iterator[httpx.Client]:
    """A client that sends exactly what a test says (no Idempotency-Key added)."""
    with httpx.Client(base_url=commerce_process.url, timeout=10) as client:
        yield client


def buyer(name: str, key: str | None = None, tenant: str = "shop-a") -> dict[str, str]:
    headers = auth(tenant, f"{name}-{uuid.uuid4().hex[:8]}", "commerce:buy")
    return {**headers, "Idempotency-Key": key or uuid.uuid4().hex}


def test_both_routes_answer_a_reservation_alike(commerce: httpx.Client, raw: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=3, limit=1)
    url = f"/v1/flash-sales/{sale}/reservations"
    lean = raw.post(url, headers={**buyer("ann"), **LEAN}, content=b'{"quantity": 1}')
    declared = raw.post(url, headers={**buyer("bob"), **DECLARED}, content=b'{"quantity": 1}')
    assert lean.status_code == declared.status_code == 201, (lean.text, declared.text)
    assert lean.headers["content-type"] == declared.headers["content-type"]
    different = {"id", "created_at", "expires_at", "buyer_id"}
    assert {k: v for k, v in lean.json().items() if k not in different} == {
        k: v for k, v in declared.json().items() if k not in different
    }
    assert lean.json().keys() == declared.json().keys()


def test_a_key_is_one_reservation_whichever_route_answers(
    commerce: httpx.Client, raw: httpx.Client
) -> None:
    _, sale = new_sale(commerce, quantity=3, limit=1)
    url = f"/v1/flash-sales/{sale}/reservations"
    ann = buyer("ann")
    first = raw.post(url, headers={**ann, **LEAN}, content=b"{}")
    again = raw.post(url, headers={**ann, **DECLARED}, content=b"{}")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    changed = raw.post(url, headers={**ann, **LEAN}, content=b'{"quantity": 2}')
    assert_refused(changed, 422, "idempotency_key_reused")
    over = raw.post(url, headers={**ann, "Idempotency-Key": "another", **LEAN}, content=b"{}")
    assert_refused(over, 409, "limit_exceeded")
    assert commerce.get(f"/v1/flash-sales/{sale}", headers=ann).json()["remaining"] == 2


def test_another_tenants_sale_is_not_found(commerce: httpx.Client, raw: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=1)
    url = f"/v1/flash-sales/{sale}/reservations"
    stranger = raw.post(url, headers={**buyer("eve", tenant="shop-b"), **LEAN}, content=b"{}")
    assert_refused(stranger, 404, "not_found")


BAD = [
    # (headers beside a good buyer's, body, status, error)
    ({}, b"{", 422, "invalid_argument"),
    ({}, b"[]", 422, "invalid_argument"),
    ({}, b"", 422, "invalid_argument"),
    ({}, b'{"quantity": 0}', 422, "invalid_argument"),
    ({}, b'{"quantity": 101}', 422, "invalid_argument"),
    ({}, b'{"quantity": 1.5}', 422, "invalid_argument"),
    ({}, b'{"quantity": NaN}', 400, "invalid_argument"),
    ({}, b'{"quantity": 1, "note": "a\\u0000b"}', 400, "invalid_argument"),
    ({}, b'{"quantity": 1, "note": "\\ud800"}', 400, "invalid_argument"),
    ({"Content-Type": "text/plain"}, b"{}", 422, "invalid_argument"),
    ({"Idempotency-Key": ""}, b"{}", 422, "invalid_argument"),
    ({"Idempotency-Key": "k" * 101}, b"{}", 422, "invalid_argument"),
    ({"Authorization": "Bearer nope"}, b"{}", 401, "unauthenticated"),
    ({"Authorization": "Basic dXNlcjpwdw=="}, b"{}", 401, "unauthenticated"),
    ({"Authorization": "Bearer a b"}, b"{}", 401, "unauthenticated"),
    (auth("shop-a", "viewer", "chat"), b"{}", 403, "permission_denied"),
    (
        {"Authorization": auth("shop-a", "old", "commerce:buy")["Authorization"][:-3] + "AAA"},
        b"{}",
        401,
        "unauthenticated",
    ),
]


@pytest.mark.parametrize(("headers", "body", "status", "error"), BAD)
def test_bad_reservations_get_the_declared_refusal(
    commerce: httpx.Client,
    raw: httpx.Client,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error: str,
) -> None:
    _, sale = new_sale(commerce, quantity=1)
    request = {**buyer("ann"), **LEAN, **headers}
    refused = raw.post(f"/v1/flash-sales/{sale}/reservations", headers=request, content=body)
    assert_refused(refused, status, error)
    left = commerce.get(f"/v1/flash-sales/{sale}", headers=buyer("ann")).json()["remaining"]
    assert left == 1  # nothing reserved


def test_an_expired_token_is_refused(commerce: httpx.Client, raw: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=1)
    token = TOKENS.issue("shop-a", "late", ["commerce:buy"], ttl_s=-1)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k", **LEAN}
    refused = raw.post(f"/v1/flash-sales/{sale}/reservations", headers=headers, content=b"{}")
    assert_refused(refused, 401, "unauthenticated")
    assert "expired" in refused.json()["message"]


def test_bodies_the_lean_route_does_not_take_reach_the_declared_route_whole(
    commerce: httpx.Client, raw: httpx.Client
) -> None:
    _, sale = new_sale(commerce, quantity=3, limit=3)
    url = f"/v1/flash-sales/{sale}/reservations"
    long = b'{"quantity": 2, "note": "' + b"x" * MAX_BODY + b'"}'  # past what the lean route reads
    made = raw.post(url, headers={**buyer("ann"), **LEAN}, content=long)
    assert made.status_code == 201, made.text
    assert made.json()["lines"][0]["quantity"] == 2

    def chunks() -> Iterator[bytes]:
        yield b'{"quan'
        yield b'tity": 1}'

    chunked = raw.post(url, headers={**buyer("bob"), **LEAN}, content=chunks())
    assert chunked.status_code == 201, chunked.text
    assert commerce.get(f"/v1/flash-sales/{sale}", headers=buyer("x")).json()["remaining"] == 0


def test_lean_answers_are_counted_per_route(commerce: httpx.Client, raw: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=1)
    url = f"/v1/flash-sales/{sale}/reservations"

    def counted(status: int) -> float:
        text = raw.get("/metrics").text
        pattern = (
            r'livecart_http_requests_total\{method="POST",'
            r'route="/v1/flash-sales/\{sale_id\}/reservations",service="commerce",'
            rf'status="{status}"\}} ([0-9.e+]+)'
        )
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    before = counted(201), counted(409)
    assert raw.post(url, headers={**buyer("ann"), **LEAN}, content=b"{}").status_code == 201
    assert raw.post(url, headers={**buyer("bob"), **LEAN}, content=b"{}").status_code == 409
    assert (counted(201), counted(409)) == (before[0] + 1, before[1] + 1)


@pytest.fixture
async def in_process(
    postgres: EmbeddedPostgres, commerce_db: Database
) -> AsyncIterator[tuple[Service, InMemorySpanExporter]]:
    """The commerce service in this process (memory bus), with its spans collected."""
    settings = CommerceSettings(
        database_url=postgres.url,
        bus="memory",
        auth_secret=SecretStr(TEST_AUTH_SECRET),
        http_host="127.0.0.1",
        http_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        log_level="WARNING",
    )
    service = Service(SERVICE, settings)
    await service.start()
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        yield service, spans
    finally:
        spans.shutdown()
        await service.stop()


async def test_only_a_traced_reservation_makes_a_server_span(
    in_process: tuple[Service, InMemorySpanExporter], commerce_db: Database
) -> None:
    service, spans = in_process
    assert service.http is not None
    sale = await create_flash_sale(commerce_db.pool, tenant="shop-a", quantity=2)
    url = f"http://127.0.0.1:{service.http.port}/v1/flash-sales/{sale}/reservations"
    trace_id = uuid.uuid4().hex
    traced = {**buyer("ann"), **LEAN, "traceparent": f"00-{trace_id}-{'1' * 16}-01"}
    async with httpx.AsyncClient(timeout=10) as client:
        untraced = await client.post(url, headers={**buyer("bob"), **LEAN}, content=b"{}")
        assert untraced.status_code == 201, untraced.text
        assert [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER] == []
        made = await client.post(url, headers=traced, content=b"{}")
        assert made.status_code == 201, made.text
    (span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.context is not None and f"{span.context.trace_id:032x}" == trace_id
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v1/flash-sales/{sale_id}/reservations"
    assert span.attributes["http.response.status_code"] == 201


async def test_a_stalled_body_is_refused_not_waited_for(commerce_db: Database) -> None:
    async def declared(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("a stalled body is the lean route's to refuse")

    lean = BuyPath(
        declared, FlashSaleEngine(commerce_db.pool), TOKENS, "commerce", Limits(body_timeout_s=0.2)
    )
    never = asyncio.Event()

    async def receive() -> Message:
        await never.wait()
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in buyer("ann").items()]
    scope = {
        "type": "http", "method": "POST", "path": f"/v1/flash-sales/{uuid.uuid4()}/reservations",
        "headers": [*headers, (b"content-length", b"15")], "query_string": b"",
    }  # fmt: skip
    await asyncio.wait_for(lean(scope, receive, send), 5)
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"] == "request_timeout"
