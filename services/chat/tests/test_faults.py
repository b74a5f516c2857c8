"""Chat while its dependencies go away: a real Kafka broker and a real Postgres, SIGKILLed and
restarted under two chat nodes (their own, so the session's shared ones are not disturbed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import httpx
import pytest

from livecart.events.v1.chat_pb2 import ChatEvent
from livecart_chat import events
from livecart_chat.app import SERVICE
from livecart_core.bus import KafkaBus
from livecart_core.bus.memory import partition_for
from livecart_core.db import Database
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import ServiceProcess

from .conftest import FAST, Viewer, join, new_room, token

TENANT = "faults-shop"
BOUND_S = 1.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as started:
        yield started


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg"))) as started:
        yield started


@pytest.fixture(scope="module")
def nodes(broker: KafkaBroker, database: EmbeddedPostgres) -> Iterator[list[ServiceProcess]]:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LIVECART_DATABASE_URL": database.url,
        "LIVECART_MIGRATE_ON_START": "true",
        "LIVECART_DATABASE_CONNECT_TIMEOUT_S": "1",
        "LIVECART_PUBLISH_TIMEOUT_S": str(BOUND_S),
        **FAST,
    }
    first = ServiceProcess("livecart_chat", env).start()  # migrates before the second starts
    started = [first, ServiceProcess("livecart_chat", env).start()]
    yield started
    for node in started:
        node.stop()


@pytest.fixture(autouse=True)
def restored(broker: KafkaBroker, database: EmbeddedPostgres) -> Iterator[None]:
    """Bring back what a test killed, also when it failed half-way, so the next test starts
    with both up."""
    yield
    if broker.process is None:
        broker.start()
    if not (database.datadir / "postmaster.pid").exists():
        database.start()


@pytest.fixture
async def db(database: EmbeddedPostgres, nodes: list[ServiceProcess]) -> AsyncIterator[Database]:
    store = Database(database.url, "chat", pool_size=2, connect_timeout_s=2)
    await store.connect()
    await store.migrate(SERVICE.migrations)
    yield store
    await store.close()


async def stored(db: Database, room: str, text: str) -> int:
    count: int = await db.pool.fetchval(
        "select count(*) from events where tenant_id = $1 and room_id = $2 and shown->>'text' = $3",
        TENANT,
        room,
        text,
    )
    return count


async def answer(viewer: Viewer, ref: str, timeout_s: float = 10) -> dict[str, object]:
    """The ack or error that answers the message sent with ``ref``."""
    await viewer.until(
        lambda v: any(f.get("ref") == ref for f in v.frames if f["type"] in ("ack", "error")),
        timeout_s,
    )
    return next(f for f in viewer.frames if f.get("ref") == ref and f["type"] in ("ack", "error"))


@pytest.mark.timeout(120)
async def test_kafka_down_answers_unavailable_in_time_and_a_resend_shows_once(
    broker: KafkaBroker, nodes: list[ServiceProcess], db: Database
) -> None:
    room = new_room()
    sender = await join(nodes[0], room, token(TENANT, "sender"))
    watcher = await join(nodes[1], room, token(TENANT, "watcher"))
    await sender.send(type="comment", text="before", client_id="c-1", ref="r1")
    assert (await answer(sender, "r1"))["type"] == "ack"
    await watcher.until(lambda v: "before" in v.comments())

    broker.kill()
    sent = time.monotonic()
    await sender.send(type="comment", text="during", client_id="c-2", ref="r2")
    refused = await answer(sender, "r2")
    waited = time.monotonic() - sent
    assert refused["type"] == "error" and refused["code"] == "unavailable", refused
    assert waited < BOUND_S + 1.5, waited  # answered within the bound, not held

    await asyncio.to_thread(broker.start)
    # The client resends with the same client id until the node can take it.
    for attempt in range(60):
        ref = f"r2-again-{attempt}"
        await sender.send(type="comment", text="during", client_id="c-2", ref=ref)
        if (await answer(sender, ref, timeout_s=BOUND_S + 5))["type"] == "ack":
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("the node never took the comment again")
    await sender.send(type="comment", text="after", client_id="c-3", ref="r3")
    assert (await answer(sender, "r3"))["type"] == "ack"
    for viewer in (sender, watcher):
        await viewer.until(lambda v: "after" in v.comments(), timeout_s=30)
        assert viewer.comments().count("during") == 1, viewer.comments()
        assert viewer.closed is None  # nobody had to reconnect
    deadline = time.monotonic() + 30
    while await stored(db, room, "after") == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert [await stored(db, room, text) for text in ("before", "during", "after")] == [1, 1, 1]

    # A resend of a comment the node has already shown is acked as the original, not published.
    await sender.send(type="comment", text="before", client_id="c-1", ref="r1-again")
    original = next(e["seq"] for e in watcher.events if e.get("text") == "before")
    assert await answer(sender, "r1-again") == {
        "type": "ack", "ref": "r1-again", "duplicate": True, "seq": original
    }  # fmt: skip


@pytest.mark.timeout(120)
async def test_postgres_down_keeps_open_rooms_live_and_refuses_new_ones_clearly(
    broker: KafkaBroker, database: EmbeddedPostgres, nodes: list[ServiceProcess], db: Database
) -> None:
    room, fresh = new_room(), new_room()
    viewer = await join(nodes[0], room, token(TENANT, "viewer"))
    await viewer.send(type="comment", text="hello", client_id="h-1", ref="h1")
    assert (await answer(viewer, "h1"))["type"] == "ack"
    await viewer.until(lambda v: "hello" in v.comments())
    # A room no node has opened, on the same partition as the open one.
    partitions = 8
    unopened = next(
        r
        for r in (f"room-other-{i}" for i in range(10_000))
        if partition_for(events.room_key(TENANT, r), partitions)
        == partition_for(events.room_key(TENANT, room), partitions)
    )

    database.kill()
    async with httpx.AsyncClient(base_url=nodes[0].url, timeout=10) as client:
        history = await client.get(
            f"/v1/rooms/{room}/history",
            headers={"Authorization": f"Bearer {token(TENANT, 'viewer')}"},
        )
        for _ in range(50):  # readiness is re-checked every 0.2 s
            ready = await client.get("/readyz", params={"verbose": "true"})
            if ready.json()["status"] != "ready":
                break
            await asyncio.sleep(0.1)
    assert history.status_code == 503, history.text
    assert history.headers["Retry-After"] == "1" and history.json()["error"] == "unavailable"
    refused = await join(nodes[0], fresh, token(TENANT, "newcomer"))
    assert refused.closed is not None and refused.closed[0] == 4503, refused.closed
    assert "unavailable" in refused.closed[1]
    assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text

    # An event for the unopened room must not hold up the open room's partition.
    elsewhere = events.comment(TENANT, unopened, "someone", "Someone", "elsewhere", "e-1")
    await publish(broker, unopened, elsewhere)
    await viewer.send(type="comment", text="still live", client_id="h-2", ref="h2")
    assert (await answer(viewer, "h2"))["type"] == "ack"
    await viewer.until(lambda v: "still live" in v.comments(), timeout_s=10)
    assert viewer.closed is None

    await asyncio.to_thread(database.start)  # crash recovery
    again = await join(nodes[0], fresh, token(TENANT, "newcomer"))
    assert again.closed is None and again.welcome["type"] == "welcome"
    deadline = time.monotonic() + 30
    while await _try(stored(db, room, "still live")) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await stored(db, room, "hello") == 1
    assert await stored(db, room, "still live") == 1
    assert await _try(stored(db, unopened, "elsewhere")) == 1
    assert viewer.closed is None

    # A resend of the comment the nodes skipped while they could not open its room: each opens
    # the room now, knows the comment from history, and drops the copy.
    marker = events.comment(TENANT, unopened, "someone", "Someone", "marker")
    await publish(broker, unopened, elsewhere, marker)
    for node in nodes:
        newcomer = await join(node, unopened, token(TENANT, "newcomer"))
        await newcomer.until(lambda v: "marker" in v.comments())
        assert newcomer.comments() == ["marker"]  # "elsewhere" is in history, once


async def publish(broker: KafkaBroker, room: str, *sent: ChatEvent) -> None:
    """Into ``room``'s stream, as another chat node would."""
    bus = KafkaBus(broker.bootstrap)
    await bus.start()
    try:
        for event in sent:
            await bus.publish(events.TOPIC, events.room_key(TENANT, room), event)
    finally:
        await bus.stop()


async def _try(count: Awaitable[int]) -> int:
    try:
        return await count
    except Exception:  # the pool's connections died with the server; the next try reconnects
        return -1
