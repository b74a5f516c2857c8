"""Payment timeout: reserved orders that were not paid in time expire and their stock returns.

A sweep takes due orders with ``FOR UPDATE SKIP LOCKED`` (several commerce processes can sweep
at once without stepping on each other), marks them expired, gives the units back to their flash
sale (and the buyer's per-user allowance) or SKU, and writes an ``OrderExpired`` event to the
outbox — all in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter

import asyncpg

from livecart.events.v1.commerce_pb2 import OrderExpired
from livecart_commerce.events import append, event

log = logging.getLogger("livecart.commerce.expiry")


class ExpirySweeper:
    def __init__(self, pool: asyncpg.Pool, *, batch: int = 1000, interval_s: float = 1.0) -> None:
        self.pool = pool
        self.batch = batch
        self.interval_s = interval_s

    async def sweep_once(self) -> int:
        """Expire one batch of due orders; returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            expired = await conn.fetch(
                "update orders set state = 'expired' where id in ("
                "  select id from orders where state = 'reserved' and expires_at <= now()"
                "  order by expires_at limit $1 for update skip locked)"
                " returning id, tenant_id, user_id, sku_id, flash_sale_id, quantity, now() as now",
                self.batch,
            )
            if not expired:
                return 0
            to_sales: Counter[uuid.UUID] = Counter()
            to_buyers: Counter[tuple[uuid.UUID, str]] = Counter()
            to_skus: Counter[uuid.UUID] = Counter()
            for o in expired:
                if o["flash_sale_id"] is not None:
                    to_sales[o["flash_sale_id"]] += o["quantity"]
                    to_buyers[o["flash_sale_id"], o["user_id"]] += o["quantity"]
                else:
                    to_skus[o["sku_id"]] += o["quantity"]
            # Sorted, so concurrent sweepers and the reservation engine lock rows in one order.
            for sale, units in sorted(to_sales.items()):
                await conn.execute(
                    "update flash_sales set remaining = remaining + $2 where id = $1", sale, units
                )
            await conn.executemany(
                "update flash_sale_buyers set quantity = quantity - $3"
                " where flash_sale_id = $1 and user_id = $2",
                [(sale, user, units) for (sale, user), units in sorted(to_buyers.items())],
            )
            await conn.executemany(
                "update skus set stock = stock + $2 where id = $1", sorted(to_skus.items())
            )
            await append(
                conn,
                [
                    event(
                        o["tenant_id"],
                        o["now"],
                        order_expired=OrderExpired(
                            order_id=str(o["id"]),
                            user_id=o["user_id"],
                            sku_id=str(o["sku_id"]),
                            flash_sale_id=str(o["flash_sale_id"] or ""),
                            quantity=o["quantity"],
                        ),
                    )
                    for o in expired
                ],
            )
            log.info("orders expired", extra={"count": len(expired)})
            return len(expired)

    async def run(self) -> None:
        """Sweep forever: right away while there is a backlog, else every ``interval_s``."""
        while True:
            try:
                swept = await self.sweep_once()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("expiry sweep failed; retrying", extra={"why": repr(exc)})
                swept = 0
            if swept < self.batch:
                await asyncio.sleep(self.interval_s)
