"""A room's lineup and the pinned product, over HTTP; pinning is announced as an event."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_core.localinfra.postgres import EmbeddedPostgres

from .conftest import MERCHANT, auth, new_sale


def test_lineup_and_pinning(commerce: httpx.Client, postgres: EmbeddedPostgres) -> None:
    first, _ = new_sale(commerce)
    second, _ = new_sale(commerce)
    room = f"room-{uuid.uuid4().hex[:8]}"
    viewer = auth("shop-a", "viewer", "commerce:buy")

    set_ = commerce.put(
        f"/v1/rooms/{room}/lineup", headers=MERCHANT, json={"product_ids": [first, second]}
    )
    assert set_.status_code == 200, set_.text
    assert set_.json() == {"room_id": room, "product_ids": [first, second], "pinned": None}

    not_listed = new_sale(commerce)[0]
    refused = commerce.put(
        f"/v1/rooms/{room}/pin", headers=MERCHANT, json={"product_id": not_listed}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "not_in_lineup"
    pinned = commerce.put(f"/v1/rooms/{room}/pin", headers=MERCHANT, json={"product_id": second})
    assert pinned.status_code == 200 and pinned.json()["pinned"] == second
    assert commerce.get(f"/v1/rooms/{room}/lineup", headers=viewer).json()["pinned"] == second

    # Another tenant sees an empty room and cannot use our products.
    stranger = auth("shop-b", "m", "commerce:admin", "commerce:buy")
    assert commerce.get(f"/v1/rooms/{room}/lineup", headers=stranger).json()["product_ids"] == []
    theirs = commerce.put(
        f"/v1/rooms/{room}/lineup", headers=stranger, json={"product_ids": [first]}
    )
    assert theirs.status_code == 404
    twice = commerce.put(
        f"/v1/rooms/{room}/lineup", headers=MERCHANT, json={"product_ids": [first, first]}
    )
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_argument"
    assert commerce.put(f"/v1/rooms/{room}/pin", headers=viewer, json={}).status_code == 403

    # Dropping the pinned product from the lineup unpins it.
    again = commerce.put(
        f"/v1/rooms/{room}/lineup", headers=MERCHANT, json={"product_ids": [first]}
    )
    assert again.json()["pinned"] is None

    async def outbox() -> list[bytes]:
        conn = await asyncpg.connect(postgres.url)  # this sync test runs outside the test loop
        try:
            rows = await conn.fetch("select payload from commerce.outbox where key = 'shop-a'")
        finally:
            await conn.close()
        return [r["payload"] for r in rows]

    pins = [
        e.product_pinned
        for e in map(CommerceEvent.FromString, asyncio.run(outbox()))
        if e.HasField("product_pinned") and e.product_pinned.room_id == room
    ]
    assert [(p.product_id, p.title, p.price_from_minor) for p in pins] == [
        (second, "Jade bracelet", 25900)
    ]
