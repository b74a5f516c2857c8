"""Listing orders: every order comes back exactly once, page by page, with its buyer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from livecart_commerce.flash_sale import FlashSaleEngine, Outcome, ReserveRequest
from livecart_core.db import Database

from .conftest import assert_refused, auth, create_flash_sale


def all_pages(client: httpx.Client, headers: dict[str, str], **params: Any) -> list[Any]:
    orders: list[Any] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/orders", params=query, headers=headers)
        assert page.status_code == 200, page.text
        orders += page.json()["orders"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return orders


async def test_a_group_committed_crowd_lists_back_whole_in_pages(
    commerce: httpx.Client, commerce_db: Database
) -> None:
    tenant = f"shop-{uuid.uuid4().hex[:8]}"
    sale = await create_flash_sale(commerce_db.pool, tenant=tenant, quantity=300)
    engine = FlashSaleEngine(commerce_db.pool)
    results = await asyncio.gather(
        *(engine.reserve(ReserveRequest(tenant, sale, f"u{i}", 1, f"k{i}")) for i in range(300))
    )
    assert {r.outcome for r in results} == {Outcome.RESERVED}
    async with commerce_db.pool.acquire() as conn:
        stamps = await conn.fetchval(
            "select count(distinct created_at) from orders where flash_sale_id = $1", sale
        )
    assert stamps < 300  # batches share their transaction's now(): the case that lost orders

    merchant = auth(tenant, "merchant", "commerce:admin", "commerce:buy")
    listed = await asyncio.to_thread(all_pages, commerce, merchant, limit=50)
    assert sorted(o["id"] for o in listed) == sorted(str(r.order_id) for r in results)
    created = [(o["created_at"], o["id"]) for o in listed]
    assert created == sorted(created, reverse=True)  # newest first, ties in a fixed order
    assert {o["buyer_id"] for o in listed} == {f"u{i}" for i in range(300)}


def test_the_merchant_filters_by_buyer_and_a_buyer_sees_only_their_own(
    commerce: httpx.Client,
) -> None:
    tenant = f"shop-{uuid.uuid4().hex[:8]}"
    merchant = auth(tenant, "merchant", "commerce:admin", "commerce:buy")
    product = commerce.post(
        "/v1/products",
        headers=merchant,
        json={"title": "Tea", "skus": [{"price_minor": 500, "currency": "CNY", "stock": 9}]},
    ).json()
    sku = product["skus"][0]["id"]
    bought: dict[str, list[str]] = {"ann": [], "bob": []}
    for name in ("ann", "bob", "ann"):
        order = commerce.post(
            "/v1/orders",
            headers=auth(tenant, name, "commerce:buy"),
            json={"items": [{"sku_id": sku, "quantity": 1}]},
        )
        assert order.status_code == 201 and order.json()["buyer_id"] == name
        bought[name].append(order.json()["id"])

    anns = all_pages(commerce, merchant, buyer="ann", limit=1)
    assert sorted(o["id"] for o in anns) == sorted(bought["ann"])
    assert {o["buyer_id"] for o in anns} == {"ann"}
    everyone = all_pages(commerce, merchant, limit=2)
    assert sorted(o["buyer_id"] for o in everyone) == ["ann", "ann", "bob"]
    one = commerce.get(f"/v1/orders/{bought['bob'][0]}", headers=merchant).json()
    assert one["buyer_id"] == "bob"

    ann = auth(tenant, "ann", "commerce:buy")
    assert {o["buyer_id"] for o in all_pages(commerce, ann, buyer="ann")} == {"ann"}
    assert_refused(
        commerce.get("/v1/orders", params={"buyer": "bob"}, headers=ann), 403, "permission_denied"
    )
    for cursor in ("not-a-cursor", "bm93fGZvbw", "x" * 201):
        refused = commerce.get("/v1/orders", params={"cursor": cursor}, headers=merchant)
        assert refused.status_code in (400, 422), refused.text
        assert refused.json()["error"] == "invalid_argument"
