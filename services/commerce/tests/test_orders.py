"""Catalog facts, carts, buy-now orders, cancel and refund, as a client sees them over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.expiry import ExpirySweeper
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres

from .conftest import assert_refused, auth, new_sale

FACTS = {
    "description": "Hand-carved Hetian jade, 10 mm beads.",
    "images": ["https://cdn.example.com/jade/1.jpg", "https://cdn.example.com/jade/2.jpg"],
    "shipping": {"ships_from": "Shenzhen", "min_days": 3, "max_days": 7, "fee_minor": 500},
    "returns": {"window_days": 14, "free": True, "conditions": "unworn, in the box"},
    "faq": [{"question": "Is it real jade?", "answer": "Yes, certified nephrite."}],
}


class Shop:
    """One fresh tenant: its merchant, and buyers made on demand."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.tenant = f"shop-{uuid.uuid4().hex[:8]}"
        self.merchant = auth(self.tenant, "merchant", "commerce:admin", "commerce:buy")

    def buyer(self, name: str) -> dict[str, str]:
        return auth(self.tenant, name, "commerce:buy")

    def product(self, *skus: tuple[int, str, int], **facts: Any) -> dict[str, Any]:
        """A product with SKUs given as (price_minor, currency, stock)."""
        made = self.client.post(
            "/v1/products",
            headers=self.merchant,
            json={"title": "Jade bracelet", **facts,
                  "skus": [{"price_minor": p, "currency": c, "stock": s,
                            "attributes": {"size": str(i)}}
                           for i, (p, c, s) in enumerate(skus)]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        product: dict[str, Any] = made.json()
        return product

    def stock(self, sku: str) -> int:
        products = self.client.get("/v1/products?limit=200", headers=self.merchant).json()
        return next(s["stock"] for p in products["products"] for s in p["skus"] if s["id"] == sku)


@pytest.fixture
def shop(commerce: httpx.Client) -> Shop:
    return Shop(commerce)


def outbox(postgres: EmbeddedPostgres, tenant: str) -> list[CommerceEvent]:
    async def read() -> list[CommerceEvent]:
        conn = await asyncpg.connect(postgres.url)  # sync tests run outside the test loop
        try:
            rows = await conn.fetch("select payload from commerce.outbox order by id")
        finally:
            await conn.close()
        events = [CommerceEvent.FromString(r["payload"]) for r in rows]
        return [e for e in events if e.tenant_id == tenant]

    return asyncio.run(read())


def changes(events: list[CommerceEvent], order_id: str) -> list[str]:
    """The kinds of change recorded for one order, in outbox order."""
    kinds = []
    for e in events:
        kind = e.WhichOneof("change")
        assert kind is not None
        if getattr(getattr(e, kind), "order_id", None) == order_id:
            kinds.append(kind)
    return kinds


def test_product_facts_listing_and_isolation(shop: Shop, commerce: httpx.Client) -> None:
    made = shop.product((25900, "USD", 10), **FACTS)
    got = commerce.get(f"/v1/products/{made['id']}", headers=shop.buyer("ann"))
    assert got.status_code == 200 and got.json() == made
    assert {k: got.json()[k] for k in FACTS} == FACTS
    for _ in range(2):
        shop.product((100, "USD", 1))
    first = commerce.get("/v1/products?limit=2", headers=shop.buyer("ann")).json()
    assert len(first["products"]) == 2 and first["next_after"]
    rest = commerce.get(
        f"/v1/products?limit=2&after={first['next_after']}", headers=shop.buyer("ann")
    ).json()
    assert len(rest["products"]) == 1 and rest["next_after"] is None
    ids = {p["id"] for p in first["products"] + rest["products"]}
    assert made["id"] in ids and len(ids) == 3
    other = commerce.get(f"/v1/products/{made['id']}", headers=auth("shop-z", "v", "commerce:buy"))
    assert_refused(other, 404, "not_found")
    assert commerce.get("/v1/products", headers=auth("shop-z", "v", "commerce:buy")).json() == {
        "products": [],
        "next_after": None,
    }


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"images": ["not a url"]}, "images"),
        ({"shipping": {"ships_from": "SZ", "min_days": 5, "max_days": 2}}, "shipping"),
        ({"returns": {"window_days": -1}}, "returns"),
        ({"faq": [{"question": "", "answer": "x"}]}, "faq"),
        ({"description": "x" * 5001}, "description"),
    ],
)
def test_bad_product_facts_are_refused(
    shop: Shop, commerce: httpx.Client, facts: dict[str, Any], field: str
) -> None:
    bad = commerce.post(
        "/v1/products",
        headers=shop.merchant,
        json={"title": "x", "skus": [{"price_minor": 1, "currency": "USD", "stock": 1}], **facts},
    )
    assert_refused(bad, 422, "invalid_argument")
    assert field in bad.text


def test_sku_restock_reprice_and_limits(shop: Shop, commerce: httpx.Client) -> None:
    sku = shop.product((1000, "USD", 3))["skus"][0]["id"]
    key = {**shop.merchant, "Idempotency-Key": "restock-1"}
    for _ in range(2):  # the same key twice restocks once
        changed = commerce.patch(f"/v1/skus/{sku}", headers=key, json={"stock_delta": 5})
        assert changed.status_code == 200 and changed.json()["stock"] == 8
    repriced = commerce.patch(f"/v1/skus/{sku}", headers=shop.merchant, json={"price_minor": 900})
    assert repriced.json()["price_minor"] == 900 and repriced.json()["stock"] == 8
    too_many = commerce.patch(f"/v1/skus/{sku}", headers=shop.merchant, json={"stock_delta": -9})
    assert_refused(too_many, 409, "not_enough_stock")
    assert shop.stock(sku) == 8
    assert_refused(
        commerce.patch(f"/v1/skus/{sku}", headers=shop.buyer("ann"), json={"stock_delta": 1}),
        403,
        "permission_denied",
    )
    other = auth("shop-z", "merchant", "commerce:admin")
    assert_refused(
        commerce.patch(f"/v1/skus/{sku}", headers=other, json={"stock_delta": 1}), 404, "not_found"
    )


def test_cart_checkout_takes_the_catalog_price_at_checkout(
    shop: Shop, commerce: httpx.Client, postgres: EmbeddedPostgres
) -> None:
    skus = [s["id"] for s in shop.product((1000, "USD", 5), (2500, "USD", 1))["skus"]]
    ann = shop.buyer("ann")
    assert commerce.put(f"/v1/cart/items/{skus[0]}", headers=ann, json={"quantity": 2}).is_success
    cart = commerce.put(f"/v1/cart/items/{skus[1]}", headers=ann, json={"quantity": 1}).json()
    assert [(i["quantity"], i["unit_price_minor"]) for i in cart["items"]] == [(2, 1000), (1, 2500)]
    assert cart["totals_minor"] == {"USD": 4500} and all(i["in_stock"] for i in cart["items"])
    # The merchant reprices before checkout: the order takes the new price, not the cart's.
    commerce.patch(f"/v1/skus/{skus[0]}", headers=shop.merchant, json={"price_minor": 1200})
    key = {**ann, "Idempotency-Key": "checkout-1"}
    order = commerce.post("/v1/cart/checkout", headers=key)
    assert order.status_code == 201, order.text
    placed = order.json()
    assert placed["origin"] == "cart" and placed["state"] == "reserved"
    assert sorted((line["quantity"], line["unit_price_minor"]) for line in placed["lines"]) == [
        (1, 2500),
        (2, 1200),
    ]
    assert placed["total_minor"] == 4900 and placed["currency"] == "USD"
    assert commerce.post("/v1/cart/checkout", headers=key).json() == placed  # replayed, not redone
    assert commerce.get("/v1/cart", headers=ann).json() == {"items": [], "totals_minor": {}}
    assert (shop.stock(skus[0]), shop.stock(skus[1])) == (3, 0)
    assert_refused(commerce.post("/v1/cart/checkout", headers=ann), 409, "cart_empty")
    assert commerce.get(f"/v1/orders/{placed['id']}", headers=ann).json() == placed

    reserved = [
        e.order_reserved for e in outbox(postgres, shop.tenant) if e.HasField("order_reserved")
    ]
    assert len(reserved) == 1 and reserved[0].order_id == placed["id"]
    assert reserved[0].total_minor == 4900 and len(reserved[0].lines) == 2


def test_checkout_is_all_or_nothing(shop: Shop, commerce: httpx.Client) -> None:
    skus = [s["id"] for s in shop.product((1000, "USD", 5), (2500, "USD", 1))["skus"]]
    bob = shop.buyer("bob")
    commerce.put(f"/v1/cart/items/{skus[0]}", headers=bob, json={"quantity": 2})
    commerce.put(f"/v1/cart/items/{skus[1]}", headers=bob, json={"quantity": 2})  # only 1 left
    short = commerce.post("/v1/cart/checkout", headers=bob)
    assert_refused(short, 409, "not_enough_stock")
    assert skus[1] in short.json()["message"]
    assert (shop.stock(skus[0]), shop.stock(skus[1])) == (5, 1)  # nothing was taken
    cart = commerce.get("/v1/cart", headers=bob).json()
    assert [i["in_stock"] for i in cart["items"]] == [True, False]  # and the cart is kept


@pytest.mark.parametrize(
    ("items", "status", "error"),
    [
        (lambda s: [{"sku_id": s["usd"], "quantity": 0}], 422, "invalid_argument"),
        (lambda s: [{"sku_id": s["usd"], "quantity": -1}], 422, "invalid_argument"),
        (lambda s: [], 422, "invalid_argument"),
        (lambda s: [{"sku_id": str(uuid.uuid4()), "quantity": 1}], 404, "not_found"),
        (lambda s: [{"sku_id": s["theirs"], "quantity": 1}], 404, "not_found"),
        (lambda s: [{"sku_id": s["usd"], "quantity": 1}, {"sku_id": s["eur"], "quantity": 1}],
         400, "mixed_currency"),
        (lambda s: [{"sku_id": s["usd"], "quantity": 6}], 409, "not_enough_stock"),
        (lambda s: [{"sku_id": "nope", "quantity": 1}], 422, "invalid_argument"),
    ],
)  # fmt: skip
def test_bad_orders_are_refused(
    shop: Shop,
    commerce: httpx.Client,
    items: Callable[[dict[str, str]], list[dict[str, Any]]],
    status: int,
    error: str,
) -> None:
    usd, eur = (s["id"] for s in shop.product((1000, "USD", 5), (900, "EUR", 5))["skus"])
    theirs = Shop(commerce).product((1, "USD", 5))["skus"][0]["id"]
    body = {"items": items({"usd": usd, "eur": eur, "theirs": theirs})}
    assert_refused(commerce.post("/v1/orders", headers=shop.buyer("ann"), json=body), status, error)
    assert shop.stock(usd) == 5 and shop.stock(eur) == 5


def test_buy_now_ignores_client_prices_and_merges_lines(shop: Shop, commerce: httpx.Client) -> None:
    sku = shop.product((1000, "USD", 5))["skus"][0]["id"]
    order = commerce.post(
        "/v1/orders",
        headers=shop.buyer("ann"),
        json={"items": [{"sku_id": sku, "quantity": 1, "unit_price_minor": 1},
                        {"sku_id": sku, "quantity": 2}], "total_minor": 1},
    )  # fmt: skip
    assert order.status_code == 201, order.text
    assert order.json()["lines"] == [{"sku_id": sku, "quantity": 3, "unit_price_minor": 1000}]
    assert order.json()["total_minor"] == 3000


def test_no_oversell_when_buyers_race(shop: Shop, commerce: httpx.Client) -> None:
    sku = shop.product((1000, "USD", 5))["skus"][0]["id"]

    def buy(i: int) -> int:
        body = {"items": [{"sku_id": sku, "quantity": 1}]}
        return commerce.post("/v1/orders", headers=shop.buyer(f"u{i}"), json=body).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(buy, range(40)))
    assert statuses.count(201) == 5 and statuses.count(409) == 35
    assert shop.stock(sku) == 0


def test_cancel_returns_stock_once(
    shop: Shop, commerce: httpx.Client, postgres: EmbeddedPostgres
) -> None:
    sku = shop.product((1000, "USD", 5))["skus"][0]["id"]
    ann = shop.buyer("ann")
    order = commerce.post(
        "/v1/orders", headers=ann, json={"items": [{"sku_id": sku, "quantity": 2}]}
    )
    order_id = order.json()["id"]
    assert shop.stock(sku) == 3
    assert_refused(
        commerce.post(f"/v1/orders/{order_id}/cancel", headers=shop.buyer("bob")), 404, "not_found"
    )
    for _ in range(2):  # cancelling again (with a new key) changes nothing
        cancelled = commerce.post(f"/v1/orders/{order_id}/cancel", headers=ann)
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert shop.stock(sku) == 5
    pay = commerce.post(f"/v1/orders/{order_id}/payments", headers=ann)
    assert_refused(pay, 409, "order_not_payable")
    assert changes(outbox(postgres, shop.tenant), order_id) == ["order_reserved", "order_cancelled"]


def test_refund_of_a_paid_order(
    shop: Shop, commerce: httpx.Client, postgres: EmbeddedPostgres
) -> None:
    sku = shop.product((1000, "USD", 5))["skus"][0]["id"]
    ann = shop.buyer("ann")
    order_id = commerce.post(
        "/v1/orders", headers=ann, json={"items": [{"sku_id": sku, "quantity": 2}]}
    ).json()["id"]
    assert_refused(
        commerce.post(f"/v1/orders/{order_id}/refund", headers=shop.merchant, json={}),
        409,
        "order_not_refundable",
    )
    payment = commerce.post(f"/v1/orders/{order_id}/payments", headers=ann).json()
    assert payment["amount_minor"] == 2000
    reference = payment["reference"]
    commerce.post(f"/v1/simulated-provider/payments/{reference}/complete", headers=ann)
    assert commerce.get(f"/v1/orders/{order_id}", headers=ann).json()["state"] == "paid"
    assert_refused(
        commerce.post(f"/v1/orders/{order_id}/cancel", headers=ann), 409, "order_not_cancellable"
    )
    assert_refused(
        commerce.post(f"/v1/orders/{order_id}/refund", headers=ann, json={}),
        403,
        "permission_denied",
    )
    assert_refused(
        commerce.post(
            f"/v1/orders/{order_id}/refund",
            headers=auth("shop-z", "merchant", "commerce:admin"),
            json={},
        ),
        404,
        "not_found",
    )
    for _ in range(2):
        refunded = commerce.post(
            f"/v1/orders/{order_id}/refund", headers=shop.merchant, json={"restock": True}
        )
        assert refunded.status_code == 200 and refunded.json()["state"] == "refunded"
    assert shop.stock(sku) == 5
    events = outbox(postgres, shop.tenant)
    assert changes(events, order_id) == ["order_reserved", "order_paid", "order_refunded"]
    refund = next(e.order_refunded for e in events if e.HasField("order_refunded"))
    assert refund.amount_minor == 2000 and refund.provider_reference == reference
    assert refund.restocked


def test_orders_list_per_buyer_and_for_the_merchant(shop: Shop, commerce: httpx.Client) -> None:
    sku = shop.product((1000, "USD", 20))["skus"][0]["id"]
    made = {}
    for name in ("ann", "ann", "ann", "bob"):
        body = {"items": [{"sku_id": sku, "quantity": 1}]}
        order = commerce.post("/v1/orders", headers=shop.buyer(name), json=body).json()
        made.setdefault(name, []).append(order["id"])
    commerce.post(f"/v1/orders/{made['ann'][0]}/cancel", headers=shop.buyer("ann"))
    page = commerce.get("/v1/orders?limit=2", headers=shop.buyer("ann")).json()
    assert [o["id"] for o in page["orders"]] == made["ann"][:0:-1]  # newest first
    rest = commerce.get(
        "/v1/orders", params={"limit": 2, "cursor": page["next_cursor"]}, headers=shop.buyer("ann")
    ).json()
    assert [o["id"] for o in rest["orders"]] == [made["ann"][0]]
    everyone = commerce.get("/v1/orders", headers=shop.merchant).json()["orders"]
    assert len(everyone) == 4
    cancelled = commerce.get("/v1/orders?state=cancelled", headers=shop.merchant).json()
    assert [o["id"] for o in cancelled["orders"]] == [made["ann"][0]]
    assert_refused(
        commerce.get("/v1/orders?state=lost", headers=shop.merchant), 422, "invalid_argument"
    )


def test_a_key_is_one_request_across_reservations_and_orders(
    shop: Shop, commerce: httpx.Client
) -> None:
    sku = shop.product((1000, "USD", 5))["skus"][0]["id"]
    ann = {**shop.buyer("ann"), "Idempotency-Key": "one-key"}
    body = {"items": [{"sku_id": sku, "quantity": 1}]}
    assert commerce.post("/v1/orders", headers=ann, json=body).status_code == 201
    body["items"][0]["quantity"] = 2
    assert_refused(
        commerce.post("/v1/orders", headers=ann, json=body), 422, "idempotency_key_reused"
    )
    assert_refused(commerce.post("/v1/cart/checkout", headers=ann), 422, "idempotency_key_reused")


async def test_unpaid_cart_orders_expire_back_to_stock(
    commerce: httpx.Client, commerce_db: Database
) -> None:
    shop = Shop(commerce)
    sku = (await asyncio.to_thread(shop.product, (1000, "USD", 4)))["skus"][0]["id"]
    order = await asyncio.to_thread(
        commerce.post,
        "/v1/orders",
        headers=shop.buyer("ann"),
        json={"items": [{"sku_id": sku, "quantity": 3}]},
    )
    async with commerce_db.pool.acquire() as conn:  # the payment window passes
        await conn.execute(
            "update orders set expires_at = now() where id = $1::uuid", order.json()["id"]
        )
    await ExpirySweeper(commerce_db.pool).sweep_once()
    got = await asyncio.to_thread(
        commerce.get, f"/v1/orders/{order.json()['id']}", headers=shop.buyer("ann")
    )
    assert got.json()["state"] == "expired"
    assert await asyncio.to_thread(shop.stock, sku) == 4


def test_a_flash_sale_key_cannot_place_an_order(commerce: httpx.Client) -> None:
    _, sale = new_sale(commerce)
    ann = {**auth("shop-a", f"ann-{uuid.uuid4().hex}", "commerce:buy"), "Idempotency-Key": "k"}
    reserved = commerce.post(
        f"/v1/flash-sales/{sale}/reservations", headers=ann, json={"quantity": 1}
    )
    assert reserved.status_code == 201
    sku = commerce.get(f"/v1/flash-sales/{sale}", headers=ann).json()["sku_id"]
    body = {"items": [{"sku_id": sku, "quantity": 1}]}
    assert_refused(
        commerce.post("/v1/orders", headers=ann, json=body), 422, "idempotency_key_reused"
    )
