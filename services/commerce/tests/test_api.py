"""The commerce REST API as a client sees it: a real service process, real HTTP, Postgres, Kafka."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.events import TOPIC
from livecart_core.bus import Event, KafkaBus
from livecart_core.localinfra.kafka import KafkaBroker

from .conftest import MERCHANT, assert_refused, auth, new_sale


def test_catalog_is_per_tenant(commerce: httpx.Client) -> None:
    product_id, _ = new_sale(commerce)
    mine = commerce.get(f"/v1/products/{product_id}", headers=auth("shop-a", "v1", "commerce:buy"))
    assert mine.status_code == 200
    assert mine.json()["skus"][0]["stock"] == 7  # 3 units went to the sale
    theirs = commerce.get(
        f"/v1/products/{product_id}", headers=auth("shop-b", "v1", "commerce:buy")
    )
    assert theirs.status_code == 404
    assert theirs.json()["error"] == "not_found"


def test_reservation_flow_with_idempotency_and_limits(commerce: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=2, limit=1)
    ann = auth("shop-a", "ann", "commerce:buy")
    url = f"/v1/flash-sales/{sale}/reservations"
    first = commerce.post(url, headers={**ann, "Idempotency-Key": "a1"}, json={"quantity": 1})
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["state"] == "reserved" and order["origin"] == "flash_sale"
    line = {"sku_id": order["lines"][0]["sku_id"], "quantity": 1, "unit_price_minor": 9900}
    assert order["lines"] == [line] and order["total_minor"] == 9900
    assert commerce.get(f"/v1/orders/{order['id']}", headers=ann).json() == order
    again = commerce.post(url, headers={**ann, "Idempotency-Key": "a1"}, json={"quantity": 1})
    assert again.status_code == 201 and again.json()["id"] == order["id"]
    changed = commerce.post(url, headers={**ann, "Idempotency-Key": "a1"}, json={"quantity": 2})
    assert changed.status_code == 422 and changed.json()["error"] == "idempotency_key_reused"
    over = commerce.post(url, headers={**ann, "Idempotency-Key": "a2"}, json={"quantity": 1})
    assert over.status_code == 409 and over.json()["error"] == "limit_exceeded"
    # A tampered price in the body is ignored: the price comes from the sale.
    bob = {**auth("shop-a", "bob", "commerce:buy"), "Idempotency-Key": "b1"}
    tampered = commerce.post(url, headers=bob, json={"quantity": 1, "unit_price_minor": 1})
    assert tampered.status_code == 201 and tampered.json()["total_minor"] == 9900
    cat = {**auth("shop-a", "cat", "commerce:buy"), "Idempotency-Key": "c1"}
    sold_out = commerce.post(url, headers=cat, json={"quantity": 1})
    assert sold_out.status_code == 409 and sold_out.json()["error"] == "sold_out"

    assert commerce.get(f"/v1/orders/{order['id']}", headers=ann).status_code == 200
    assert commerce.get(f"/v1/orders/{order['id']}", headers=bob).status_code == 404
    left = commerce.get(f"/v1/flash-sales/{sale}", headers=ann).json()
    assert left["remaining"] == 0


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "error"),
    [
        ("post", "/v1/products", {}, {"title": "x", "skus": []}, 401, "unauthenticated"),
        ("post", "/v1/products", {"Authorization": "Bearer nope"}, {}, 401, "unauthenticated"),
        ("post", "/v1/products", auth("shop-a", "v", "commerce:buy"),
         {"title": "x", "skus": [{"price_minor": 1, "currency": "USD", "stock": 1}]},
         403, "permission_denied"),
        ("post", "/v1/products", MERCHANT,
         {"title": "x", "skus": [{"price_minor": -5, "currency": "USD", "stock": 1}]},
         422, "invalid_argument"),
        ("post", "/v1/products", MERCHANT,
         {"title": "x", "skus": [{"price_minor": 5, "currency": "usd", "stock": 1}]},
         422, "invalid_argument"),
        ("post", f"/v1/flash-sales/{uuid.uuid4()}/reservations",
         {**auth("shop-a", "v", "commerce:buy"), "Idempotency-Key": "k"}, {"quantity": 1},
         404, "not_found"),
        ("post", f"/v1/flash-sales/{uuid.uuid4()}/reservations",
         {**auth("shop-a", "v", "commerce:buy"), "Idempotency-Key": ""}, {"quantity": 1},
         422, "invalid_argument"),
        ("post", f"/v1/flash-sales/{uuid.uuid4()}/reservations",
         {**auth("shop-a", "v", "commerce:buy"), "Idempotency-Key": "k"}, {"quantity": 0},
         422, "invalid_argument"),
        ("get", "/v1/orders/not-a-uuid", auth("shop-a", "v", "commerce:buy"), None,
         422, "invalid_argument"),
        ("post", "/v1/flash-sales", MERCHANT,
         {"sku_id": str(uuid.uuid4()), "sale_price_minor": 1, "quantity": 1,
          "starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"},
         422, "invalid_argument"),
        ("post", "/v1/flash-sales", MERCHANT,
         {"sku_id": str(uuid.uuid4()), "sale_price_minor": 1, "quantity": 1,
          "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z"},
         404, "not_found"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx(
    commerce: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    body: object,
    status: int,
    error: str,
) -> None:
    assert_refused(commerce.request(method, path, headers=headers, json=body), status, error)


def test_admin_writes_are_idempotent(commerce: httpx.Client) -> None:
    body = {"title": "Kettle", "skus": [{"price_minor": 4500, "currency": "EUR", "stock": 5}]}
    headers = {**MERCHANT, "Idempotency-Key": f"kettle-{uuid.uuid4()}"}
    first = commerce.post("/v1/products", headers=headers, json=body)
    again = commerce.post("/v1/products", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()  # one product, not two
    other = commerce.post("/v1/products", headers=headers, json={**body, "title": "Pot"})
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    blank = commerce.post("/v1/products", headers={**MERCHANT, "Idempotency-Key": ""}, json=body)
    assert blank.status_code == 422


def test_malformed_json_and_oversold_sale_creation(commerce: httpx.Client) -> None:
    broken = commerce.post(
        "/v1/products", headers={**MERCHANT, "Content-Type": "application/json"}, content=b"{"
    )
    assert broken.status_code == 422
    product_id, _ = new_sale(commerce)
    sku = commerce.get(f"/v1/products/{product_id}", headers=MERCHANT).json()["skus"][0]["id"]
    now = datetime.now(UTC)
    too_many = commerce.post(
        "/v1/flash-sales",
        headers=MERCHANT,
        json={"sku_id": sku, "sale_price_minor": 1, "quantity": 1000,
              "starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat()},
    )  # fmt: skip
    assert too_many.status_code == 409 and too_many.json()["error"] == "not_enough_stock"


async def test_reservations_reach_kafka(commerce: httpx.Client, kafka_broker: KafkaBroker) -> None:
    _, sale = new_sale(commerce, quantity=5, limit=1)
    orders = set()
    for user in "vwxyz":
        headers = {**auth("shop-a", user, "commerce:buy"), "Idempotency-Key": f"{sale}-{user}"}
        made = await asyncio.to_thread(
            commerce.post, f"/v1/flash-sales/{sale}/reservations", headers=headers, json={}
        )
        assert made.status_code == 201, made.text
        orders.add(made.json()["id"])
    bus = KafkaBus(kafka_broker.bootstrap)
    await bus.start()
    seen: set[str] = set()

    async def collect(event: Event) -> None:
        reserved = CommerceEvent.FromString(event.value).order_reserved
        if reserved.flash_sale_id == sale:
            seen.add(reserved.order_id)

    subscription = await bus.subscribe(TOPIC, f"api-test-{sale}", collect)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while seen != orders and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert seen == orders
    finally:
        await subscription.stop()
        await bus.stop()
