"""SIGKILL one of three commerce processes in the middle of a flash sale: nothing is oversold,
no order is lost or duplicated, and every order's event reaches Kafka."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.events import TOPIC
from livecart_core.auth import TokenAuthority
from livecart_core.bus import Event, KafkaBus
from livecart_core.db import Database
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
TENANT = "failover-shop"
BUYERS = 2000
UNITS = 100


@pytest.fixture
def processes(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres, commerce_db: Database
) -> Iterator[list[ServiceProcess]]:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
    }
    started = [ServiceProcess("livecart_commerce", env).start() for _ in range(3)]
    yield started
    for process in started:
        process.stop()


@pytest.mark.timeout(240)
async def test_sigkill_mid_sale_keeps_the_invariants(
    processes: list[ServiceProcess], commerce_db: Database, kafka_broker: KafkaBroker
) -> None:
    token = TOKENS.issue(TENANT, "m", ["commerce:admin"])
    merchant = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        base = processes[0].url
        product = await client.post(
            f"{base}/v1/products",
            headers={**merchant, "Idempotency-Key": f"product-{uuid.uuid4()}"},
            json={"title": "Tea set", "skus": [{"price_minor": 5000, "currency": "EUR",
                  "stock": UNITS}]},
        )  # fmt: skip
        sku = product.json()["skus"][0]["id"]
        now = datetime.now(UTC)
        sale = (
            await client.post(
                f"{base}/v1/flash-sales",
                headers={**merchant, "Idempotency-Key": f"sale-{uuid.uuid4()}"},
                json={
                    "sku_id": sku,
                    "sale_price_minor": 100,
                    "quantity": UNITS,
                    "starts_at": (now - timedelta(seconds=1)).isoformat(),
                    "ends_at": (now + timedelta(hours=1)).isoformat(),
                },
            )
        ).json()["id"]

    alive = list(processes)
    done = 0
    in_flight = asyncio.Semaphore(100)  # httpx's pool slows down badly past a few hundred
    answers: dict[str, list[str | None]] = {}

    async def buy(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        user, key = f"buyer-{i % 1500}", f"{sale}-{i}"  # some users try twice: limit 1
        headers = {
            "Authorization": f"Bearer {TOKENS.issue(TENANT, user, ['commerce:buy'])}",
            "Idempotency-Key": key,
        }
        for attempt in itertools.count():
            target = alive[(i + attempt) % len(alive)]
            try:
                async with in_flight:
                    response = await client.post(
                        f"{target.url}/v1/flash-sales/{sale}/reservations",
                        headers=headers,
                        json={},
                    )
            except httpx.TransportError:
                continue  # that process died: retry the same request elsewhere, same key
            assert response.status_code in (201, 409), response.text
            order = response.json()["id"] if response.status_code == 201 else None
            answers.setdefault(key, []).append(order)
            if attempt == 0 and i % 7 == 0:
                continue  # a client that retries a request that did succeed
            break
        done += 1

    async def kill_one_mid_sale() -> None:
        while done < BUYERS // 5:
            await asyncio.sleep(0.01)
        victim = alive.pop(0)
        assert victim.process is not None
        victim.process.kill()

    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(kill_one_mid_sale(), *(buy(client, i) for i in range(BUYERS)))

    # Restart the killed process on its own ports, as an orchestrator would.
    restarted = ServiceProcess("livecart_commerce", processes[0].env).start()
    processes.append(restarted)

    # Every answer for one key named the same order; exactly the units were sold.
    for key, orders in answers.items():
        assert len(set(orders)) == 1, (key, orders)
    sold = {orders[0] for orders in answers.values() if orders[0]}
    assert len(sold) == UNITS
    pool = commerce_db.pool
    async with pool.acquire() as conn:
        assert await conn.fetchval("select remaining from flash_sales where id = $1", sale) == 0
        rows = await conn.fetch(
            "select id::text, user_id from orders where flash_sale_id = $1", sale
        )
        assert {r["id"] for r in rows} == sold
        assert len({r["user_id"] for r in rows}) == UNITS  # nobody over the limit of 1
        for _ in range(300):
            left = await conn.fetchval(
                "select count(*) from outbox where published_at is null and key = $1", TENANT
            )
            if left == 0:
                break
            await asyncio.sleep(0.1)
        assert left == 0

    bus = KafkaBus(kafka_broker.bootstrap)
    await bus.start()
    published: dict[str, set[str]] = {}

    async def collect(event: Event) -> None:
        payload = CommerceEvent.FromString(event.value)
        if payload.order_reserved.flash_sale_id == sale:
            published.setdefault(payload.order_reserved.order_id, set()).add(payload.event_id)

    subscription = await bus.subscribe(TOPIC, f"failover-{sale}", collect)
    try:
        for _ in range(300):
            if set(published) == sold:
                break
            await asyncio.sleep(0.1)
        assert set(published) == sold
        assert all(len(ids) == 1 for ids in published.values())  # one event per order
    finally:
        await subscription.stop()
        await bus.stop()
