"""Event bus on Apache Kafka through aiokafka (asyncio-native; chosen by bench/bus.py).

Producer: idempotent, acks=all. Consumers: one aiokafka consumer per subscription, auto-commit
off. The consumer's fetch loop hands each partition's records to that partition's own lane (a
task), so an event being retried holds up its partition only; a lane with ``LANE_BATCHES``
batches waiting pauses its partition's fetching until it catches up. A lane commits after
the handler has returned for every record of a batch, so a crash or restart re-delivers
rather than loses; a rebalance cancels the lanes of the partitions it takes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord
from google.protobuf.message import Message
from opentelemetry import trace

from livecart_core.bus.base import (
    HANDLER_ATTEMPTS,
    Event,
    EventBus,
    Handler,
    Outgoing,
    Subscription,
    count_from_zero,
    deliver,
    encode,
    publish_span,
)
from livecart_core.errors import StartupError
from livecart_core.metrics import BUS_PUBLISHED
from livecart_core.telemetry import inject_headers

log = logging.getLogger("livecart.bus.kafka")
LANE_BATCHES = 4
# Keys are text on this bus, but a record from elsewhere may carry any bytes: they survive the
# round trip to a dead letter instead of stopping the consumer.
KEY_ERRORS = "surrogateescape"
Batches = asyncio.Queue[list[ConsumerRecord]]


class KafkaBus(EventBus):
    backend = "kafka"

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 8,
        connect_timeout_s: float = 10.0,
        handler_attempts: int = HANDLER_ATTEMPTS,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.handler_attempts = handler_attempts
        self.connect_timeout_s = connect_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()  # what the producer uses: see _send_batches
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._topics_lock = asyncio.Lock()
        self._subscriptions: list[_KafkaSubscription] = []

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=int(self.connect_timeout_s * 1000),
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.connect_timeout_s * 1000)
        )
        # aiokafka logs every failed bootstrap attempt; start-up reports the failure itself, once.
        client_log = logging.getLogger("aiokafka")
        level = client_log.level
        client_log.setLevel(logging.CRITICAL)
        try:
            await asyncio.wait_for(producer.start(), self.connect_timeout_s)
            await asyncio.wait_for(admin.start(), self.connect_timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            raise StartupError(
                f"LIVECART_KAFKA_BOOTSTRAP={self.bootstrap!r}: cannot reach Kafka "
                f"within {self.connect_timeout_s:g}s ({type(exc).__name__})"
            ) from None
        finally:
            client_log.setLevel(level)
        self._producer, self._admin = producer, admin

    async def stop(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def check(self) -> None:
        if self._producer is None:
            raise RuntimeError("kafka bus is not started")
        await self._producer.client.fetch_all_metadata()

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create missing topics with the configured partition count."""
        assert self._admin is not None, "start() first"
        async with self._topics_lock:  # concurrent first publishes ask the broker once
            missing = [t for t in topics if t not in self._known_topics]
            if not missing:
                return
            existing = set(await self._admin.list_topics())
            new = [t for t in missing if t not in existing]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await self._admin.create_topics(
                        [
                            NewTopic(t, num_partitions=self.partitions, replication_factor=1)
                            for t in new
                        ]
                    )
            self._known_topics.update(missing)

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes | Message,
        headers: Iterable[tuple[str, bytes]] = (),
    ) -> None:
        if self._producer is None:
            raise RuntimeError("kafka bus is not started")
        if topic not in self._known_topics:
            await self.ensure_topics([topic])
        with trace.use_span(publish_span(topic), end_on_exit=True):
            await self._producer.send_and_wait(
                topic,
                encode(value),
                key=key.encode("utf-8", KEY_ERRORS),
                headers=[*headers, *inject_headers()],
            )
        BUS_PUBLISHED.labels(self.backend, topic).inc()

    async def publish_many(self, events: Sequence[Outgoing]) -> None:
        if self._producer is None:
            raise RuntimeError("kafka bus is not started")
        topics = Counter(e.topic for e in events)
        unknown = [t for t in topics if t not in self._known_topics]
        if unknown:
            await self.ensure_topics(unknown)
        with trace.use_span(publish_span(",".join(sorted(topics))), end_on_exit=True):
            await asyncio.gather(*await self._send_batches(events, inject_headers()))
        for name, count in topics.items():
            BUS_PUBLISHED.labels(self.backend, name).inc(count)

    async def _send_batches(
        self, events: Sequence[Outgoing], context: Sequence[tuple[str, bytes]]
    ) -> list[asyncio.Future[object]]:
        """Queue ``events`` as record batches, one per partition (more when one fills), and
        return their delivery futures. ``send()`` per event costs ~20 us of Python (partitioner,
        accumulator, a future each), most of what an outbox relay spends per event; a batch
        costs that once. Partitions are chosen as ``send()`` would (the producer's partitioner
        on the key), so an event's key keeps its partition whichever way it was published,
        and batches of one partition are delivered in the order queued."""
        assert self._producer is not None
        producer = self._producer
        by_partition: dict[tuple[str, int], list[Outgoing]] = {}
        chosen: dict[tuple[str, str], int] = {}
        partitions: dict[str, list[int]] = {}
        for e in events:
            partition = chosen.get((e.topic, e.key))
            if partition is None:
                if e.topic not in partitions:
                    partitions[e.topic] = sorted(await producer.partitions_for(e.topic))
                every = partitions[e.topic]
                key = e.key.encode("utf-8", KEY_ERRORS)
                partition = chosen[e.topic, e.key] = self._partitioner(key, every, every)
            by_partition.setdefault((e.topic, partition), []).append(e)
        sent: list[asyncio.Future[object]] = []
        for (topic, partition), queued in by_partition.items():
            batch = producer.create_batch()
            for e in queued:
                record = {
                    "timestamp": None,
                    "key": e.key.encode("utf-8", KEY_ERRORS),
                    "value": encode(e.value),
                    "headers": [*e.headers, *context],
                }
                if batch.append(**record) is None:  # full: send it, go on in a new one
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(**record)
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        return sent

    async def subscribe(
        self,
        topics: str | Sequence[str],
        group: str,
        handler: Handler,
        *,
        from_beginning: bool = True,
        commit: bool = True,
    ) -> Subscription:
        names = [topics] if isinstance(topics, str) else list(topics)
        await self.ensure_topics(names)
        count_from_zero(self.backend, names, group)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            request_timeout_ms=int(self.connect_timeout_s * 1000),
        )
        sub = _KafkaSubscription(self, consumer, group, handler, commit=commit)
        consumer.subscribe(names, listener=_Revocations(sub))
        await consumer.start()
        sub.task = asyncio.create_task(sub._run(), name=f"bus-kafka-{group}")
        self._subscriptions.append(sub)
        return sub


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: _KafkaSubscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sub._close_lanes(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


class _Lane:
    """One partition's batches, handled in order by one task."""

    def __init__(self, sub: _KafkaSubscription, tp: TopicPartition) -> None:
        self.batches: Batches = asyncio.Queue()
        self.task = asyncio.create_task(sub._drain(tp, self.batches), name=f"bus-kafka-{tp}")


class _KafkaSubscription(Subscription):
    def __init__(
        self,
        bus: KafkaBus,
        consumer: AIOKafkaConsumer,
        group: str,
        handler: Handler,
        *,
        commit: bool = True,
    ) -> None:
        self.bus = bus
        self.commit = commit
        self.consumer = consumer
        self.group = group
        self.handler = handler
        self.lanes: dict[TopicPartition, _Lane] = {}
        self.task: asyncio.Task[None] | None = None

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        return frozenset((tp.topic, tp.partition) for tp in self.consumer.assignment())

    async def positions(self, timeout_s: float = 30.0) -> dict[tuple[str, int], int]:
        async with asyncio.timeout(timeout_s):
            # aiokafka has no public event for "assigned"; the group join takes ~a second.
            while not self.consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            return {
                (tp.topic, tp.partition): await self.consumer.position(tp)
                for tp in self.consumer.assignment()
            }

    async def _run(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
            except Exception as exc:  # any failure: a consumer that stops fetching is a bug
                # The client reconnects by itself; keep the member alive and try again.
                log.warning("fetch failed; retrying", extra={"group": self.group, "why": repr(exc)})
                await asyncio.sleep(1)
                continue
            owned = self.consumer.assignment()
            for tp, records in batches.items():
                if tp not in owned:  # revoked since the fetch: its new owner reads these
                    continue
                lane = self.lanes.get(tp)
                if lane is None:
                    lane = self.lanes[tp] = _Lane(self, tp)
                lane.batches.put_nowait(records)
                if lane.batches.qsize() >= LANE_BATCHES:
                    self.consumer.pause(tp)

    async def _drain(self, tp: TopicPartition, batches: Batches) -> None:
        while True:
            records = await batches.get()
            if batches.qsize() < LANE_BATCHES and tp in self.consumer.paused():
                self.consumer.resume(tp)
            for record in records:
                event = Event(
                    topic=record.topic,
                    key=(record.key or b"").decode("utf-8", KEY_ERRORS),
                    value=record.value or b"",
                    headers=tuple(record.headers),
                    partition=record.partition,
                    offset=record.offset,
                )
                await deliver(self.bus, self.group, event, self.handler)
            if self.commit:
                await self._commit(tp, records[-1].offset + 1)

    async def _close_lanes(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop handling ``partitions``; what their lanes had not committed is read again by
        whoever owns them next."""
        closing = [lane.task for tp in partitions if (lane := self.lanes.pop(tp, None))]
        for task in closing:
            task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self.consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member during a rebalance: it re-reads from the
            # last committed offset, so these records are delivered again, not lost.
            log.info(
                "commit skipped after rebalance", extra={"partition": str(tp), "why": str(exc)}
            )
        except Exception as exc:  # the broker is away: the lane must go on all the same
            # The next batch's commit covers this one; a restart before it re-delivers.
            log.warning("commit failed", extra={"partition": str(tp), "why": repr(exc)})

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
            await self._close_lanes(list(self.lanes))
            await self.consumer.stop()
        if self in self.bus._subscriptions:
            self.bus._subscriptions.remove(self)
