"""The event bus contract, run against both backends: a real Kafka broker and the in-process
bus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import REGISTRY

from livecart_core.bus import (
    DEAD_LETTER_HEADERS,
    Event,
    EventBus,
    KafkaBus,
    MemoryBus,
    Outgoing,
    PoisonEvent,
    Transient,
    dead_letter_topic,
)
from livecart_core.bus.memory import partition_for


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        backend: EventBus = MemoryBus(partitions=8)
    else:
        broker = request.getfixturevalue("kafka_broker")
        backend = KafkaBus(broker.bootstrap, partitions=8)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


def topic() -> str:
    return f"test.{uuid.uuid4().hex[:10]}"


async def eventually(predicate: Callable[[], Any], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout_s}s")
        await asyncio.sleep(0.02)


def recorder(into: list[Event]) -> Callable[[Event], Awaitable[None]]:
    async def handle(event: Event) -> None:
        into.append(event)

    return handle


async def test_events_with_one_key_arrive_in_publish_order(bus: EventBus) -> None:
    name, seen = topic(), []
    keys = [f"room-{i}" for i in range(4)]
    for seq in range(40):
        for key in keys:
            await bus.publish(name, key, f"{key}:{seq}".encode())
    sub = await bus.subscribe(name, "order", recorder(seen))
    await eventually(lambda: len(seen) >= 160)
    for key in keys:
        values = [e.value.decode() for e in seen if e.key == key]
        assert values == [f"{key}:{seq}" for seq in range(40)]
        assert len({e.partition for e in seen if e.key == key}) == 1
    await sub.stop()


async def test_a_failing_handler_is_retried_until_it_succeeds(bus: EventBus) -> None:
    name, handled = topic(), []
    attempts: dict[str, int] = {}

    async def flaky(event: Event) -> None:
        value = event.value.decode()
        attempts[value] = attempts.get(value, 0) + 1
        if value == "3" and attempts[value] < 3:
            raise RuntimeError("downstream hiccup")
        handled.append(value)

    for i in range(6):
        await bus.publish(name, "one-key", str(i).encode())
    sub = await bus.subscribe(name, "flaky", flaky)
    await eventually(lambda: len(handled) >= 6)
    assert handled == ["0", "1", "2", "3", "4", "5"]
    assert attempts["3"] == 3
    await sub.stop()


async def test_restart_resumes_from_the_committed_offset(bus: EventBus) -> None:
    name, first, second = topic(), [], []
    for i in range(20):
        await bus.publish(name, f"k{i % 5}", f"a{i}".encode())
    sub = await bus.subscribe(name, "restart", recorder(first))
    await eventually(lambda: len(first) >= 20)
    await asyncio.sleep(0.5)  # let the last commit land before leaving the group
    await sub.stop()
    for i in range(20):
        await bus.publish(name, f"k{i % 5}", f"b{i}".encode())
    sub = await bus.subscribe(name, "restart", recorder(second))
    await eventually(lambda: len(second) >= 20)
    await asyncio.sleep(0.3)
    await sub.stop()
    assert sorted(e.value.decode() for e in first) == sorted(f"a{i}" for i in range(20))
    assert sorted(e.value.decode() for e in second) == sorted(f"b{i}" for i in range(20))


async def test_an_event_not_committed_before_a_crash_is_delivered_again(bus: EventBus) -> None:
    name, attempts, handled = topic(), [], []

    async def broken(event: Event) -> None:
        attempts.append(event.value)
        raise Transient("the database is away")

    await bus.publish(name, "k", b"precious")
    sub = await bus.subscribe(name, "crash", broken)
    await eventually(lambda: len(attempts) >= 2)
    await sub.stop()  # the consumer goes away mid-retry: nothing was committed
    sub = await bus.subscribe(name, "crash", recorder(handled))
    await eventually(lambda: len(handled) >= 1)
    assert [e.value for e in handled] == [b"precious"]
    await sub.stop()


async def test_members_of_a_group_share_the_partitions(bus: EventBus) -> None:
    name, got_a, got_b = topic(), [], []
    a = await bus.subscribe(name, "shared", recorder(got_a))
    b = await bus.subscribe(name, "shared", recorder(got_b))
    every = frozenset((name, p) for p in range(8))
    await eventually(
        lambda: (
            a.assignment
            and b.assignment
            and (a.assignment | b.assignment) == every
            and not (a.assignment & b.assignment)
        ),
        timeout_s=30,
    )
    for i in range(80):
        await bus.publish(name, f"viewer-{i}", str(i).encode())
    await eventually(lambda: len({e.value for e in got_a + got_b}) >= 80)
    assert got_a and got_b
    assert {(e.partition) for e in got_a}.isdisjoint({e.partition for e in got_b})
    await a.stop()
    await b.stop()


async def test_every_group_sees_every_event(bus: EventBus) -> None:
    name, one, two = topic(), [], []
    s1 = await bus.subscribe(name, "analytics", recorder(one))
    s2 = await bus.subscribe(name, "moderation", recorder(two))
    for i in range(30):
        await bus.publish(name, f"k{i}", str(i).encode())
    await eventually(lambda: len(one) >= 30 and len(two) >= 30)
    assert sorted(e.value for e in one) == sorted(e.value for e in two)
    await s1.stop()
    await s2.stop()


async def test_a_new_group_replays_from_the_earliest_offset(bus: EventBus) -> None:
    name, seen = topic(), []
    for i in range(30):
        await bus.publish(name, "replay", str(i).encode())
    await asyncio.sleep(0.2)
    sub = await bus.subscribe(name, f"late-{uuid.uuid4().hex[:6]}", recorder(seen))
    await eventually(lambda: len(seen) >= 30)
    assert [e.value.decode() for e in seen] == [str(i) for i in range(30)]
    assert [e.offset for e in seen] == list(range(30))
    await sub.stop()


async def test_headers_travel_with_the_event(bus: EventBus) -> None:
    name, seen = topic(), []
    await bus.publish(name, "k", b"v", headers=[("tenant", b"acme")])
    sub = await bus.subscribe(name, "headers", recorder(seen))
    await eventually(lambda: len(seen) >= 1)
    assert seen[0].header("tenant") == b"acme"
    assert seen[0].header("traceparent") is not None
    await sub.stop()


async def test_publish_many_keeps_order_per_key_and_headers(bus: EventBus) -> None:
    first, second, seen = topic(), topic(), []
    batch = [
        Outgoing(name, f"k{i % 3}", f"{name}:{i}".encode(), (("event-id", str(i).encode()),))
        for i in range(30)
        for name in (first, second)
    ]
    await bus.publish_many(batch)
    sub = await bus.subscribe([first, second], "many", recorder(seen))
    await eventually(lambda: len(seen) >= 60)
    for name in (first, second):
        for key in ("k0", "k1", "k2"):
            values = [e.value.decode() for e in seen if e.topic == name and e.key == key]
            assert values == [f"{name}:{i}" for i in range(30) if f"k{i % 3}" == key]
    assert sorted(int(e.header("event-id") or b"-1") for e in seen) == sorted(list(range(30)) * 2)
    assert all(e.header("traceparent") is None or e.header("traceparent") for e in seen)
    await sub.stop()


async def test_a_member_joining_at_the_end_sees_everything_after_positions(bus: EventBus) -> None:
    name, seen = topic(), []
    for i in range(5):
        await bus.publish(name, f"k{i}", b"before")
    sub = await bus.subscribe(
        name, f"late-{uuid.uuid4().hex}", recorder(seen), from_beginning=False
    )
    positions = await sub.positions()
    assert {tp for tp in positions} == {(name, p) for p in range(8)}
    assert sum(positions.values()) == 5  # it starts after the five earlier events
    for i in range(20):
        await bus.publish(name, f"k{i}", b"after")
    await eventually(lambda: len(seen) >= 20)
    assert {e.value for e in seen} == {b"after"}
    await sub.stop()


async def test_a_member_that_does_not_commit_leaves_the_group_where_it_was(bus: EventBus) -> None:
    name, group, first, second = topic(), f"nc-{uuid.uuid4().hex}", [], []
    for i in range(5):
        await bus.publish(name, "k", str(i).encode())
    sub = await bus.subscribe(name, group, recorder(first), commit=False)
    await eventually(lambda: len(first) == 5)
    await sub.stop()
    again = await bus.subscribe(name, group, recorder(second))
    await eventually(lambda: len(second) == 5)  # nothing was committed: all of it again
    assert [e.value for e in second] == [e.value for e in first]
    await again.stop()


def dead_letters(bus: EventBus, name: str, group: str) -> float | None:
    """The exported count; None when the series does not exist (an alert would miss its rise)."""
    labels = {"backend": bus.backend, "topic": name, "group": group}
    return REGISTRY.get_sample_value("livecart_bus_dead_letters_total", labels)


async def test_an_event_that_keeps_failing_is_dead_lettered_and_its_partition_moves_on(
    bus: EventBus,
) -> None:
    name, group = topic(), f"dl-{uuid.uuid4().hex[:6]}"
    handled: list[bytes] = []
    letters: list[Event] = []
    attempts: dict[bytes, int] = {}

    async def picky(event: Event) -> None:
        attempts[event.value] = attempts.get(event.value, 0) + 1
        if event.value == b"poison":
            raise ValueError("cannot store \ud800")
        handled.append(event.value)

    for value in (b"0", b"1", b"poison", b"2", b"3"):
        await bus.publish(name, "one-key", value, headers=[("tenant", b"acme")])
    sub = await bus.subscribe(name, group, picky)
    reader = await bus.subscribe(dead_letter_topic(name), "dl-reader", recorder(letters))
    await eventually(lambda: len(handled) >= 4 and len(letters) >= 1)
    assert handled == [b"0", b"1", b"2", b"3"]
    assert attempts[b"poison"] == bus.handler_attempts
    letter = letters[0]
    assert (letter.key, letter.value, letter.header("tenant")) == ("one-key", b"poison", b"acme")
    assert {h: letter.header(h) for h in DEAD_LETTER_HEADERS} == {
        "dead-letter-topic": name.encode(),
        "dead-letter-group": group.encode(),
        "dead-letter-partition": str(partition_for("one-key", 8)).encode(),
        "dead-letter-offset": b"2",
        "dead-letter-error": b"ValueError",
        "dead-letter-reason": b"cannot store \\ud800",
        "dead-letter-attempts": str(bus.handler_attempts).encode(),
    }
    assert dead_letters(bus, name, group) == 1
    await sub.stop()
    await asyncio.sleep(0.3)  # the dead letter was committed: a restart does not see it again
    again: list[Event] = []
    sub = await bus.subscribe(name, group, recorder(again))
    await bus.publish(name, "one-key", b"4")
    await eventually(lambda: len(again) >= 1)
    assert [e.value for e in again] == [b"4"]
    await sub.stop()
    await reader.stop()


async def test_a_poison_event_is_dead_lettered_at_the_first_failure(bus: EventBus) -> None:
    name, group = topic(), "poison"
    handled: list[bytes] = []
    letters: list[Event] = []
    attempts: list[bytes] = []

    async def strict(event: Event) -> None:
        attempts.append(event.value)
        if event.value == b"garbage":
            raise PoisonEvent("not a ChatEvent")
        handled.append(event.value)

    for value in (b"garbage", b"fine"):
        await bus.publish(name, "k", value)
    sub = await bus.subscribe(name, group, strict)
    reader = await bus.subscribe(dead_letter_topic(name), "dl-reader", recorder(letters))
    await eventually(lambda: handled and letters)
    assert attempts == [b"garbage", b"fine"]
    assert letters[0].header("dead-letter-error") == b"PoisonEvent"
    assert letters[0].header("dead-letter-reason") == b"not a ChatEvent"
    await sub.stop()
    await reader.stop()


@pytest.mark.parametrize("outage", [Transient, ConnectionRefusedError, TimeoutError])
async def test_a_transient_failure_is_retried_past_the_attempt_bound(
    bus: EventBus, outage: type[Exception]
) -> None:
    name, group, handled = topic(), f"outage-{uuid.uuid4().hex[:6]}", []
    failures = 0

    async def behind_an_outage(event: Event) -> None:
        nonlocal failures
        if event.value == b"1" and failures < bus.handler_attempts + 3:
            failures += 1
            raise outage("the database is away")
        handled.append(event.value)

    for value in (b"0", b"1", b"2"):
        await bus.publish(name, "k", value)
    sub = await bus.subscribe(name, group, behind_an_outage)
    await eventually(lambda: len(handled) >= 3)
    assert handled == [b"0", b"1", b"2"]
    assert failures == bus.handler_attempts + 3
    assert dead_letters(bus, name, group) == 0
    await sub.stop()


async def test_a_retrying_partition_does_not_hold_up_the_others(bus: EventBus) -> None:
    name, handled = topic(), []
    stuck = "room-stuck"
    others = [k for k in (f"room-{i}" for i in range(40)) if
              partition_for(k, 8) != partition_for(stuck, 8)][:10]  # fmt: skip
    healed = asyncio.Event()

    async def handle(event: Event) -> None:
        if event.key == stuck and not healed.is_set():
            raise Transient("this room's store is away")
        handled.append(event.key)

    await bus.publish(name, stuck, b"first")
    sub = await bus.subscribe(name, "independent", handle)
    await sub.positions()
    await asyncio.sleep(0.3)  # the stuck event is being retried
    for key in others:
        await bus.publish(name, key, b"later")
    await eventually(lambda: len(handled) >= len(others), timeout_s=10)
    assert sorted(handled) == sorted(others)
    healed.set()
    await eventually(lambda: stuck in handled)
    await sub.stop()


async def test_a_kafka_record_whose_key_is_not_utf8_is_dead_lettered_intact(
    kafka_broker: Any,
) -> None:
    bus = KafkaBus(kafka_broker.bootstrap, partitions=8)
    await bus.start()
    name, handled, letters = topic(), [], []

    async def text_keys_only(event: Event) -> None:
        if not event.key.isprintable():
            raise PoisonEvent("the key is not text")
        handled.append(event.key)

    await bus.ensure_topics([name])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:  # written by a client that is not this bus
        await producer.send_and_wait(name, b"raw", key=b"\xff\xfe", partition=0)
        await producer.send_and_wait(name, b"fine", key=b"room-1", partition=0)
    finally:
        await producer.stop()
    sub = await bus.subscribe(name, "raw-keys", text_keys_only)
    reader = await bus.subscribe(dead_letter_topic(name), "dl-reader", recorder(letters))
    try:
        await eventually(lambda: handled and letters)
        assert handled == ["room-1"]
        assert letters[0].key.encode("utf-8", "surrogateescape") == b"\xff\xfe"
        assert letters[0].value == b"raw"
    finally:
        await sub.stop()
        await reader.stop()
        await bus.stop()


async def test_a_dead_letter_kafka_refuses_is_retried_until_it_is_taken(
    kafka_broker: Any,
) -> None:
    name, handled, letters = topic(), [], []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    # The dead-letter topic refuses the event (too large for it) until an operator raises the
    # limit: the bus must hold the event, neither committing it nor dropping it.
    await admin.create_topics(
        [NewTopic(dead_letter_topic(name), 8, 1, topic_configs={"max.message.bytes": "64"})]
    )
    bus = KafkaBus(kafka_broker.bootstrap, partitions=8)
    await bus.start()

    async def refuse_big(event: Event) -> None:
        if len(event.value) > 100:
            raise PoisonEvent("too big to handle")
        handled.append(event.value)

    try:
        await bus.publish(name, "k", b"x" * 500)
        await bus.publish(name, "k", b"after")
        sub = await bus.subscribe(name, "refused-letter", refuse_big)
        reader = await bus.subscribe(dead_letter_topic(name), "dl-reader", recorder(letters))
        await asyncio.sleep(3)
        assert handled == [] and letters == []
        assert dead_letters(bus, name, "refused-letter") == 0
        raised = {"max.message.bytes": "1048588"}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dead_letter_topic(name), raised)]
        )
        await eventually(lambda: handled and letters)
        assert handled == [b"after"] and [e.value for e in letters] == [b"x" * 500]
        assert dead_letters(bus, name, "refused-letter") == 1
        await sub.stop()
        await reader.stop()
    finally:
        await bus.stop()
        await admin.close()
