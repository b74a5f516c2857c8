"""The outbox relay puts every committed commerce event on Kafka, once, with its id."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.events import TOPIC
from livecart_commerce.flash_sale import FlashSaleEngine, Outcome, ReserveRequest
from livecart_commerce.outbox import OutboxRelay
from livecart_core.bus import Event, KafkaBus
from livecart_core.db import Database
from livecart_core.localinfra.kafka import KafkaBroker

from .conftest import create_flash_sale


async def test_three_relays_publish_each_event_once(
    commerce_db: Database, kafka_broker: KafkaBroker
) -> None:
    pool = commerce_db.pool
    sale = await create_flash_sale(pool, quantity=60, per_user_limit=1)
    engine = FlashSaleEngine(pool)
    results = await asyncio.gather(
        *(
            engine.reserve(ReserveRequest("acme", sale, f"u{i}", 1, f"{sale}-{i}"))
            for i in range(60)
        )
    )
    orders = {str(r.order_id) for r in results if r.outcome is Outcome.RESERVED}
    assert len(orders) == 60

    bus = KafkaBus(kafka_broker.bootstrap)
    await bus.start()
    seen: list[Event] = []

    async def collect(event: Event) -> None:
        seen.append(event)

    subscription = await bus.subscribe(TOPIC, f"outbox-test-{sale}", collect)
    try:
        relays = [OutboxRelay(pool, bus, batch=7) for _ in range(3)]

        async def drain(relay: OutboxRelay) -> None:
            for _ in range(200):
                if await relay.relay_once() == 0:
                    async with pool.acquire() as conn:
                        left = await conn.fetchval(
                            "select count(*) from outbox where published_at is null"
                        )
                    if left == 0:
                        return
                await asyncio.sleep(0.01)

        await asyncio.gather(*(drain(r) for r in relays))

        def mine() -> list[CommerceEvent]:
            events = [CommerceEvent.FromString(e.value) for e in seen]
            return [e for e in events if e.order_reserved.flash_sale_id == str(sale)]

        deadline = asyncio.get_running_loop().time() + 30
        while len(mine()) < 60 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate, if any, would arrive right behind
        events = mine()
        assert {e.order_reserved.order_id for e in events} == orders
        assert max(Counter(e.event_id for e in events).values()) == 1
        for e in seen:  # the topic is shared with other tests' events: look at this sale's
            payload = CommerceEvent.FromString(e.value)
            if payload.order_reserved.flash_sale_id != str(sale):
                continue
            assert e.header("event-id") == payload.event_id.encode()
            assert e.key == payload.tenant_id
    finally:
        await subscription.stop()
        await bus.stop()


async def test_pruning_deletes_only_rows_published_before_the_retention(
    commerce_db: Database,
) -> None:
    pool = commerce_db.pool
    topic = f"test.prune-{uuid.uuid4()}"  # this test's rows, beside other tests' events
    async with pool.acquire() as conn:
        ids = {
            age: await conn.fetchval(
                "insert into outbox (event_id, topic, key, payload, published_at)"
                " values ($1, $2, 'acme', $3, $4) returning id",
                event_id,
                topic,
                CommerceEvent(event_id=str(event_id), tenant_id="acme").SerializeToString(),
                published_at,
            )
            for age, published_at, event_id in (
                ("old", datetime.now(UTC) - timedelta(hours=2), uuid.uuid4()),
                ("recent", datetime.now(UTC) - timedelta(minutes=5), uuid.uuid4()),
                ("unpublished", None, uuid.uuid4()),
            )
        }
    relay = OutboxRelay(pool, KafkaBus("127.0.0.1:1"), retention_s=3600, prune_batch=1000)
    assert await relay.prune_once() >= 1
    async with pool.acquire() as conn:
        left = {
            row["id"] for row in await conn.fetch("select id from outbox where topic = $1", topic)
        }
    assert left == {ids["recent"], ids["unpublished"]}
    assert await relay.prune_once() == 0  # nothing old is left: the round rests
    assert await relay.prune_round() is False
