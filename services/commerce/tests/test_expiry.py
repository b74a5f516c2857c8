"""Unpaid orders expire on time and their stock is sold again."""

from __future__ import annotations

import asyncio

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.expiry import ExpirySweeper
from livecart_commerce.flash_sale import FlashSaleEngine, Outcome, ReserveRequest
from livecart_core.db import Database

from .conftest import create_flash_sale


async def test_unpaid_orders_expire_and_their_stock_sells_again(commerce_db: Database) -> None:
    pool = commerce_db.pool
    sale = await create_flash_sale(pool, quantity=5, per_user_limit=1)
    engine = FlashSaleEngine(pool, payment_timeout_s=0.3, sold_out_recheck_s=0.1)

    def ask(user: str, key: str) -> ReserveRequest:
        return ReserveRequest("acme", sale, user, 1, key)

    first = await asyncio.gather(*(engine.reserve(ask(u, f"{u}-1")) for u in "abcde"))
    assert all(r.outcome is Outcome.RESERVED for r in first)
    assert (await engine.reserve(ask("f", "f-1"))).outcome is Outcome.SOLD_OUT

    sweeper = ExpirySweeper(pool)
    assert await sweeper.sweep_once() == 0  # nothing is due yet
    await asyncio.sleep(0.5)
    assert await sweeper.sweep_once() == 5
    assert await sweeper.sweep_once() == 0

    async with pool.acquire() as conn:
        assert await conn.fetchval("select remaining from flash_sales where id = $1", sale) == 5
        states = await conn.fetch("select state from orders where flash_sale_id = $1", sale)
        assert {s["state"] for s in states} == {"expired"}
        held = await conn.fetchval(
            "select sum(quantity) from flash_sale_buyers where flash_sale_id = $1", sale
        )
        assert held == 0
        payloads = await conn.fetch("select payload from outbox")
    expired = [
        e.order_expired
        for e in map(CommerceEvent.FromString, (p["payload"] for p in payloads))
        if e.order_expired.flash_sale_id == str(sale)
    ]
    assert {e.order_id for e in expired} == {str(r.order_id) for r in first}

    await asyncio.sleep(0.15)  # past the engine's sold-out recheck
    assert (await engine.reserve(ask("f", "f-1"))).outcome is Outcome.RESERVED
    assert (await engine.reserve(ask("a", "a-2"))).outcome is Outcome.RESERVED  # allowance back
