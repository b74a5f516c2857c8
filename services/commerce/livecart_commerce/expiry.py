"""Payment timeout: reserved orders that were not paid in time expire and their stock returns.

A sweep takes due orders with ``FOR UPDATE SKIP LOCKED`` (several commerce processes can sweep
at once without stepping on each other), marks them expired, gives the units back to their flash
sale (and the buyer's per-user allowance) or SKU, and writes an ``OrderExpired`` event to the
outbox — all in one transaction.
"""

from __future__ import annotations

import logging

import asyncpg

from livecart.events.v1.commerce_pb2 import OrderExpired
from livecart_commerce.events import append, event
from livecart_commerce.orders import line_event, release_stock

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
            lines = await release_stock(conn, expired)
            await append(
                conn,
                [
                    event(
                        o["tenant_id"],
                        o["now"],
                        order_expired=OrderExpired(
                            order_id=str(o["id"]),
                            user_id=o["user_id"],
                            sku_id=str(o["sku_id"] or ""),
                            flash_sale_id=str(o["flash_sale_id"] or ""),
                            quantity=o["quantity"] or 0,
                            lines=[line_event(line) for line in lines[o["id"]]],
                        ),
                    )
                    for o in expired
                ],
            )
            log.info("orders expired", extra={"count": len(expired)})
            return len(expired)

    async def round(self) -> bool:
        """One round for :meth:`Service.repeat_in_background` (every ``interval_s``, at once
        again while there is a backlog; retried with backoff whatever it raises)."""
        return await self.sweep_once() >= self.batch
