"""The outbox relay: publishes committed ``commerce.outbox`` rows to the bus, in id order.

An event is written in the same transaction as the change it describes, so no committed change
goes unpublished. The relay marks rows published only after the bus acknowledged them; a crash in
between publishes them again, so delivery is at least once and consumers drop duplicates by the
``event-id`` header (the CommerceEvent's ``event_id``). One relay works at a time across all
commerce processes (a transaction-scoped advisory lock), which keeps the order of ids.

Published rows are kept ``retention_s`` (to look into what went out) and then deleted in
bounded rounds, so a long sale does not grow the table without end.
"""

from __future__ import annotations

import asyncpg

from livecart_core.bus import EventBus, Outgoing

LOCK = "commerce.outbox"


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: EventBus,
        *,
        batch: int = 500,
        idle_s: float = 0.05,
        retention_s: float = 3600.0,
        prune_batch: int = 5000,
        prune_interval_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.batch = batch
        self.idle_s = idle_s
        self.retention_s = retention_s
        self.prune_batch = prune_batch
        self.prune_interval_s = prune_interval_s

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows; returns how many (0 when idle or not leader)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("select pg_try_advisory_xact_lock(hashtext($1))", LOCK):
                return 0
            rows = await conn.fetch(
                "select id, event_id, topic, key, payload from outbox"
                " where published_at is null order by id limit $1",
                self.batch,
            )
            if not rows:
                return 0
            await self.bus.publish_many(
                [
                    Outgoing(
                        row["topic"],
                        row["key"],
                        bytes(row["payload"]),
                        (("event-id", str(row["event_id"]).encode()),),
                    )
                    for row in rows
                ]
            )
            await conn.execute(
                "update outbox set published_at = now() where id = any($1::bigint[])",
                [row["id"] for row in rows],
            )
            return len(rows)

    async def round(self) -> bool:
        """One round for :meth:`Service.repeat_in_background`, which retries it with backoff
        whatever it raises (bus or database down): True while rows may be waiting."""
        return await self.relay_once() > 0

    async def prune_once(self) -> int:
        """Delete up to ``prune_batch`` rows published more than ``retention_s`` ago; returns
        how many. Rows are published in id order, so the oldest published have the lowest ids:
        the scan walks the primary key and stops once it has a batch. Unpublished rows stay."""
        async with self.pool.acquire() as conn:
            status: str = await conn.execute(
                "delete from outbox where id in ("
                " select id from outbox where published_at < now() - make_interval(secs => $1)"
                " order by id limit $2)",
                self.retention_s,
                self.prune_batch,
            )
        return int(status.rpartition(" ")[2])

    async def prune_round(self) -> bool:
        """One pruning round for :meth:`Service.repeat_in_background`: True while a backlog of
        old rows may be left."""
        return await self.prune_once() >= self.prune_batch
