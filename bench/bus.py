"""Kafka client throughput: aiokafka vs kafka-python, and the overhead of our own KafkaBus.

Starts one real single-node Kafka broker (``KafkaBroker``), then measures with identical
settings for both clients (idempotent producer, acks=all, linger 0, 16 KiB batches, no
compression, keyed messages over 8 partitions, 500 records per consumer batch):

- produce: aiokafka enqueues every ``send()`` and gathers the delivery futures; kafka-python
  calls ``send()`` in a loop; both end with ``flush()``. One fresh topic per measurement.
- consume: a fresh group reads one full topic from the earliest offset, auto-commit off,
  committing after each ``getmany()`` / ``poll()`` batch, until all messages are read. Both
  clients read the same topic. The clock starts at the first batch, so group join is excluded.
- ``KafkaBus`` end to end: ``publish()`` in gathered chunks of 1000, then ``subscribe()`` with a
  no-op handler; tracing is set up as a service does (SDK spans, no exporter).

A short warm-up produce runs first so neither client pays the broker's JIT warm-up.

    uv run python bench/bus.py [--messages 50000] [--size 200]

Prints ``name=value unit`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
from kafka.admin import KafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from livecart_core.bus import Event, KafkaBus
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.telemetry import setup_tracing

PARTITIONS = 8
DISTINCT_KEYS = 1000
PUBLISH_CHUNK = 1000
CONSUME_TIMEOUT_S = 60.0
# Pinned to the same values for both libraries (also their defaults and KafkaBus's).
LINGER_MS = 0
BATCH_BYTES = 16384
MAX_RECORDS = 500


@dataclass(frozen=True)
class Workload:
    """The messages every measurement sends: same keys, same payload size."""

    count: int
    size: int

    def keys(self) -> list[str]:
        return [f"key-{i % DISTINCT_KEYS}" for i in range(self.count)]

    def value(self) -> bytes:
        return b"x" * self.size

    def chunks(self) -> Iterator[range]:
        for start in range(0, self.count, PUBLISH_CHUNK):
            yield range(start, min(start + PUBLISH_CHUNK, self.count))


class ConsumeClock:
    """Throughput from the first batch received to the last, so group join is not counted."""

    def __init__(self) -> None:
        self.seen = 0
        self.first_batch = 0
        self.started = 0.0
        self.ended = 0.0

    def batch(self, n: int) -> None:
        now = time.perf_counter()
        if self.seen == 0:
            self.started, self.first_batch = now, n
        self.seen += n
        self.ended = now

    def rate(self) -> float:
        return (self.seen - self.first_batch) / (self.ended - self.started)


def fresh(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, prefix: str) -> str:
    name = fresh(prefix)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)],
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    return name


async def produce_aiokafka(bootstrap: str, topic: str, work: Workload) -> float:
    keys, value = [k.encode() for k in work.keys()], work.value()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=LINGER_MS,
        max_batch_size=BATCH_BYTES,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        deliveries = [await producer.send(topic, value, key=key) for key in keys]
        await asyncio.gather(*deliveries)
        await producer.flush()
        return work.count / (time.perf_counter() - started)
    finally:
        await producer.stop()


def produce_kafka_python(bootstrap: str, topic: str, work: Workload) -> float:
    keys, value = [k.encode() for k in work.keys()], work.value()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=LINGER_MS,
        batch_size=BATCH_BYTES,
    )
    try:
        started = time.perf_counter()
        deliveries = [producer.send(topic, value, key=key) for key in keys]
        producer.flush()
        elapsed = time.perf_counter() - started
        failed = sum(1 for d in deliveries if d.failed())
        if failed:
            raise RuntimeError(f"kafka-python: {failed} sends failed")
        return work.count / elapsed
    finally:
        producer.close()


async def consume_aiokafka(bootstrap: str, topic: str, work: Workload) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=fresh("aiokafka"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        clock, deadline = ConsumeClock(), time.monotonic() + CONSUME_TIMEOUT_S
        while clock.seen < work.count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"aiokafka read {clock.seen}/{work.count}")
            batches = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            n = sum(len(records) for records in batches.values())
            if n:
                await consumer.commit()
                clock.batch(n)
        return clock.rate()
    finally:
        await consumer.stop()


def consume_kafka_python(bootstrap: str, topic: str, work: Workload) -> float:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=fresh("kafka-python"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=MAX_RECORDS,
    )
    try:
        clock, deadline = ConsumeClock(), time.monotonic() + CONSUME_TIMEOUT_S
        while clock.seen < work.count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka-python read {clock.seen}/{work.count}")
            batches = consumer.poll(timeout_ms=500, max_records=MAX_RECORDS)
            n = sum(len(records) for records in batches.values())
            if n:
                consumer.commit()
                clock.batch(n)
        return clock.rate()
    finally:
        consumer.close()


async def livecart_bus(bootstrap: str, topic: str, work: Workload) -> tuple[float, float]:
    """(publish, consume) msgs/s through KafkaBus."""
    keys, value = work.keys(), work.value()
    bus = KafkaBus(bootstrap, partitions=PARTITIONS)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        started = time.perf_counter()
        for chunk in work.chunks():
            await asyncio.gather(*(bus.publish(topic, keys[i], value) for i in chunk))
        publish_rate = work.count / (time.perf_counter() - started)

        clock, done = ConsumeClock(), asyncio.Event()

        async def handler(event: Event) -> None:
            clock.batch(1)
            if clock.seen >= work.count:
                done.set()

        sub = await bus.subscribe(topic, fresh("livecart"), handler)
        try:
            await asyncio.wait_for(done.wait(), CONSUME_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(f"KafkaBus read {clock.seen}/{work.count}") from None
        finally:
            await sub.stop()
        return publish_rate, clock.rate()
    finally:
        await bus.stop()


def report(name: str, value: float, unit: str) -> None:
    print(f"{name}={value:.2f} {unit}" if unit == "x" else f"{name}={value:.0f} {unit}", flush=True)


def run(bootstrap: str, work: Workload) -> None:
    # Topics are made up front: a just-created partition can briefly answer NotLeader, and the
    # retry backoff would then land inside a timed produce.
    topics = {
        name: create_topic(bootstrap, name)
        for name in ("warmup-aiokafka", "warmup-kafka-python", "aiokafka", "kafka-python", "bus")
    }
    warmup = Workload(min(work.count, 5000), work.size)
    asyncio.run(produce_aiokafka(bootstrap, topics["warmup-aiokafka"], warmup))
    produce_kafka_python(bootstrap, topics["warmup-kafka-python"], warmup)

    produce_aio = asyncio.run(produce_aiokafka(bootstrap, topics["aiokafka"], work))
    report("kafka_produce_msgs_per_s_aiokafka", produce_aio, "msgs/s")
    produce_kp = produce_kafka_python(bootstrap, topics["kafka-python"], work)
    report("kafka_produce_msgs_per_s_kafka_python", produce_kp, "msgs/s")

    consume_aio = asyncio.run(consume_aiokafka(bootstrap, topics["aiokafka"], work))
    report("kafka_consume_msgs_per_s_aiokafka", consume_aio, "msgs/s")
    consume_kp = consume_kafka_python(bootstrap, topics["aiokafka"], work)
    report("kafka_consume_msgs_per_s_kafka_python", consume_kp, "msgs/s")

    setup_tracing("livecart-bench", None)
    bus_publish, bus_consume = asyncio.run(livecart_bus(bootstrap, topics["bus"], work))
    report("bus_publish_msgs_per_s_livecart", bus_publish, "msgs/s")
    report("bus_consume_msgs_per_s_livecart", bus_consume, "msgs/s")

    report("produce_ratio_aiokafka_over_kafka_python", produce_aio / produce_kp, "x")
    report("consume_ratio_aiokafka_over_kafka_python", consume_aio / consume_kp, "x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000, help="messages per measurement")
    parser.add_argument("--size", type=int, default=200, help="payload bytes per message")
    args = parser.parse_args()
    work = Workload(args.messages, args.size)
    print(f"messages={work.count} msgs\nmessage_size={work.size} bytes", flush=True)
    broker = KafkaBroker()
    try:
        broker.start()
        run(broker.bootstrap, work)
    finally:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
