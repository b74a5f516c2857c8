"""An event chat's history can never store, beside a database outage, on real Kafka and Postgres:
the poison is dead-lettered with its reason, the outage is waited out, and no other room's
event is lost or stored twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livecart_chat import events
from livecart_core.bus import Event, KafkaBus, dead_letter_topic
from livecart_core.bus.memory import partition_for
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import ServiceProcess

OUTAGE_S = 4.0  # several times what the bounded retries of a poison event take


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A Postgres of this test's own, which it stops and starts again."""
    server = EmbeddedPostgres().start()
    try:
        yield server
    finally:
        server.stop()


async def stored_event_ids(url: str, tenants: list[str]) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "select event_id from chat.events where tenant_id = any($1::text[])", tenants
        )
    finally:
        await conn.close()
    return [r["event_id"] for r in rows]


def dead_letters_counted(node: ServiceProcess) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "livecart_bus_dead_letters"
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels.get("group") == "chat-history"
        and sample.labels.get("topic") == events.TOPIC
    )


async def test_a_poison_event_is_dead_lettered_while_an_outage_is_waited_out(
    kafka_broker: KafkaBroker, own_postgres: EmbeddedPostgres
) -> None:
    tenant, other_tenant = (f"tenant-{uuid.uuid4().hex[:8]}" for _ in range(2))
    rooms = [f"room-{i}" for i in range(12)]
    # Past every producer's validation (as a producer from before the rules, or a stranger,
    # would write it): Postgres cannot hold the NUL in the name.
    poison = events.comment(tenant, rooms[0], "u1", "A\x00nn", "hello")
    node = ServiceProcess(
        "livecart_chat",
        {
            "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "LIVECART_DATABASE_URL": own_postgres.url,
            "LIVECART_MIGRATE_ON_START": "true",
        },
    ).start()
    bus = KafkaBus(kafka_broker.bootstrap)
    await bus.start()
    letters: list[Event] = []

    async def keep(letter: Event) -> None:
        letters.append(letter)

    reader = await bus.subscribe(
        dead_letter_topic(events.TOPIC), f"reader-{uuid.uuid4().hex[:6]}", keep
    )
    try:
        sent: list[str] = []

        async def comment_in_every_room(text: str) -> None:
            for shop in (tenant, other_tenant):
                for room in rooms:
                    event = events.comment(shop, room, "u1", "Ann", text)
                    await bus.publish(events.TOPIC, events.room_key(shop, room), event)
                    sent.append(event.event_id)

        await comment_in_every_room("before")
        await bus.publish(events.TOPIC, events.room_key(tenant, rooms[0]), poison)
        await comment_in_every_room("after the poison")
        await asyncio.to_thread(own_postgres.stop)
        await comment_in_every_room("during the outage")
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(own_postgres.start)

        deadline = asyncio.get_running_loop().time() + 60
        while sorted(await stored_event_ids(own_postgres.url, [tenant, other_tenant])) != sorted(
            sent
        ):
            assert asyncio.get_running_loop().time() < deadline, "history lost events"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # would anything be stored twice, or dead-lettered late?
        stored = await stored_event_ids(own_postgres.url, [tenant, other_tenant])
        assert sorted(stored) == sorted(sent)
        assert len({partition_for(events.room_key(tenant, r), 8) for r in rooms}) > 1

        ours = [
            letter
            for letter in letters
            if letter.header("dead-letter-group") == b"chat-history"
            and letter.key.startswith(f"{tenant}/")
        ]
        assert [letter.decode(type(poison)).event_id for letter in ours] == [poison.event_id]
        letter = ours[0]
        assert letter.header("dead-letter-topic") == events.TOPIC.encode()
        assert letter.header("dead-letter-error") == b"PoisonEvent"
        reason = letter.header("dead-letter-reason") or b""
        assert b"cannot be stored" in reason
        assert dead_letters_counted(node) == 1
    finally:
        await reader.stop()
        await bus.stop()
        node.stop()
