"""Flash-sale reservations against real Postgres: never oversold, limits and idempotency hold."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.flash_sale import FlashSaleEngine, Outcome, ReserveRequest
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres

from .conftest import create_flash_sale

BUYERS = Path(__file__).with_name("buyers.py")


async def test_two_thousand_buyers_in_three_processes_take_exactly_the_stock(
    commerce_db: Database, postgres: EmbeddedPostgres
) -> None:
    sale = await create_flash_sale(commerce_db.pool, quantity=100, per_user_limit=1)
    users = 1500  # fewer users than buyers: many users try twice, the limit must stop them
    shares = [(0, 667), (667, 667), (1334, 666)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(BUYERS),
            postgres.url,
            str(sale),
            "acme",
            str(first),
            str(count),
            str(users),
            stdout=asyncio.subprocess.PIPE,
        )
        for first, count in shares
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    assert all(p.returncode == 0 for p in processes)
    lines = [json.loads(line) for out, _ in outputs for line in out.decode().splitlines()]
    assert len(lines) == sum(count + -(-count // 10) for _, count in shares)  # 10% retried

    outcomes = Counter(line["outcome"] for line in lines)
    by_key: dict[str, set[str | None]] = {}
    for line in lines:
        by_key.setdefault(line["key"], set()).add(line["order"])
    reserved_keys = {k for k, orders in by_key.items() if orders != {None}}
    assert len(reserved_keys) == 100
    assert all(len(orders) == 1 for orders in by_key.values()), "a retry got another order"
    assert set(outcomes) <= {"reserved", "sold_out", "limit_exceeded"}

    async with commerce_db.pool.acquire() as conn:
        assert await conn.fetchval("select remaining from flash_sales where id = $1", sale) == 0
        orders = await conn.fetch(
            "select user_id, quantity from orders where flash_sale_id = $1", sale
        )
        assert sum(o["quantity"] for o in orders) == 100
        per_user = Counter(o["user_id"] for o in orders)
        assert max(per_user.values()) == 1
        held = await conn.fetch(
            "select user_id, quantity from flash_sale_buyers where flash_sale_id = $1", sale
        )
        assert {h["user_id"]: h["quantity"] for h in held} == dict(per_user)
        payloads = await conn.fetch("select payload from outbox where key = 'acme'")
    events = [CommerceEvent.FromString(row["payload"]) for row in payloads]
    mine = {
        e.order_reserved.order_id for e in events if e.order_reserved.flash_sale_id == str(sale)
    }
    assert mine == {order for orders in by_key.values() for order in orders if order}


async def test_limits_idempotency_and_refusals(commerce_db: Database) -> None:
    sale = await create_flash_sale(commerce_db.pool, quantity=3, per_user_limit=2)
    engine = FlashSaleEngine(commerce_db.pool)

    def ask(user: str, key: str, quantity: int = 1, tenant: str = "acme") -> ReserveRequest:
        return ReserveRequest(tenant, sale, user, quantity, key)

    first = await engine.reserve(ask("ann", "a1"))
    assert first.outcome is Outcome.RESERVED and first.order_id is not None
    again = await engine.reserve(ask("ann", "a1"))
    assert again.order_id == first.order_id  # same key, same body: the same order
    assert (await engine.reserve(ask("ann", "a1", quantity=2))).outcome is Outcome.KEY_REUSED
    assert (await engine.reserve(ask("ann", "a2", quantity=2))).outcome is Outcome.LIMIT_EXCEEDED
    assert (await engine.reserve(ask("ann", "a3"))).outcome is Outcome.RESERVED
    assert (await engine.reserve(ask("bob", "b1", tenant="evil"))).outcome is Outcome.NOT_FOUND
    assert (await engine.reserve(ask("bob", "b2"))).outcome is Outcome.RESERVED
    assert (await engine.reserve(ask("cat", "c1"))).outcome is Outcome.SOLD_OUT
    # Sold out is cached; a retry of an order that went through still finds its order.
    assert (await engine.reserve(ask("bob", "b2"))).outcome is Outcome.RESERVED
    with pytest.raises(ValueError):
        await engine.reserve(ask("dan", "d1", quantity=0))

    later = await create_flash_sale(commerce_db.pool, starts_in=timedelta(hours=1))
    early = ReserveRequest("acme", later, "ann", 1, "e1")
    assert (await engine.reserve(early)).outcome is Outcome.NOT_ACTIVE
    missing = ReserveRequest("acme", uuid.uuid4(), "ann", 1, "m1")
    assert (await engine.reserve(missing)).outcome is Outcome.NOT_FOUND


async def test_a_sold_out_sale_is_not_found_for_another_tenant(commerce_db: Database) -> None:
    tenant = f"shop-{uuid.uuid4().hex[:8]}"
    sale = await create_flash_sale(commerce_db.pool, tenant=tenant, quantity=1)
    # A long recheck: every later batch takes the in-memory sold-out path.
    engine = FlashSaleEngine(commerce_db.pool, sold_out_recheck_s=60)
    taken = await engine.reserve(ReserveRequest(tenant, sale, "ann", 1, "a1"))
    assert taken.outcome is Outcome.RESERVED
    stranger = ReserveRequest("evil", sale, "eve", 1, "e1")
    unknown = ReserveRequest("evil", uuid.uuid4(), "eve", 1, "e2")
    assert (await engine.reserve(stranger)).outcome is Outcome.NOT_FOUND
    assert (await engine.reserve(unknown)).outcome is Outcome.NOT_FOUND
    # The stranger's request, batched with the owner's, still hears "not found".
    both = await asyncio.gather(
        engine.reserve(ReserveRequest("evil", sale, "eve", 1, "e3")),
        engine.reserve(ReserveRequest(tenant, sale, "bob", 1, "b1")),
        engine.reserve(ReserveRequest(tenant, sale, "ann", 1, "a1")),
    )
    assert [r.outcome for r in both] == [Outcome.NOT_FOUND, Outcome.SOLD_OUT, Outcome.RESERVED]
    assert both[2].order_id == taken.order_id
    assert taken.order is not None and taken.order.buyer_id == "ann"


async def test_a_retry_racing_its_original_in_another_process_gets_the_order(
    commerce_db: Database,
) -> None:
    """Two engines (two commerce processes) take the same press at once: one reserves, the other
    waits for the sale's lock and must answer with that order, not ``limit_exceeded``."""
    sale = await create_flash_sale(commerce_db.pool, quantity=10, per_user_limit=1)
    engines = [FlashSaleEngine(commerce_db.pool) for _ in range(2)]
    for attempt in range(5):
        press = ReserveRequest("acme", sale, f"ann{attempt}", 1, f"press-{attempt}")
        first, second = await asyncio.gather(*(e.reserve(press) for e in engines))
        assert first.outcome is second.outcome is Outcome.RESERVED, (first, second)
        assert first.order_id == second.order_id


@pytest.mark.parametrize("coalesce", [True, False])
async def test_concurrent_reservations_in_one_process(
    commerce_db: Database, coalesce: bool
) -> None:
    sale = await create_flash_sale(commerce_db.pool, quantity=50, per_user_limit=3)
    engine = FlashSaleEngine(commerce_db.pool, coalesce=coalesce)
    results = await asyncio.gather(
        *(
            engine.reserve(ReserveRequest("acme", sale, f"u{i % 40}", 1, f"{sale}-{i}"))
            for i in range(300)
        )
    )
    assert sum(r.outcome is Outcome.RESERVED for r in results) == 50
    async with commerce_db.pool.acquire() as conn:
        assert await conn.fetchval("select remaining from flash_sales where id = $1", sale) == 0
        assert (
            await conn.fetchval(
                "select max(quantity) from flash_sale_buyers where flash_sale_id = $1", sale
            )
            <= 3
        )


async def test_sales_and_skus_that_orders_refer_to_are_never_deleted(
    commerce_db: Database,
) -> None:
    """The engine's orders and buyers' counts carry no foreign keys (they cost a check per row
    under the sale's lock): what they refer to is kept by refusing its deletion."""
    pool = commerce_db.pool
    sale = await create_flash_sale(pool, quantity=5)
    engine = FlashSaleEngine(pool)
    reserved = await engine.reserve(ReserveRequest("acme", sale, "ann", 1, f"{sale}-keep"))
    assert reserved.outcome is Outcome.RESERVED
    async with pool.acquire() as conn:
        sku = await conn.fetchval("select sku_id from flash_sales where id = $1", sale)
        for statement, arg in (
            ("delete from flash_sales where id = $1", sale),
            ("delete from skus where id = $1", sku),
        ):
            with pytest.raises(asyncpg.RestrictViolationError, match="never deleted"):
                await conn.execute(statement, arg)
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("truncate flash_sales cascade")
        assert (
            await conn.fetchval(
                "select count(*) from orders o join flash_sales s on s.id = o.flash_sale_id"
                " join skus k on k.id = o.sku_id where o.flash_sale_id = $1",
                sale,
            )
            == 1
        )
