"""In-process event bus with Kafka's semantics, for the all-in-one dev mode and unit tests.

Topics are partitioned logs kept in memory for the life of the process; groups keep committed
offsets and split partitions among their members the way Kafka's range assignor does, so code
written against it behaves the same on the Kafka backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2
from google.protobuf.message import Message
from opentelemetry import trace

from livecart_core.bus.base import (
    HANDLER_ATTEMPTS,
    Event,
    EventBus,
    Handler,
    Outgoing,
    Subscription,
    TopicPartition,
    count_from_zero,
    deliver,
    encode,
    publish_span,
)
from livecart_core.metrics import BUS_PUBLISHED
from livecart_core.telemetry import inject_headers

log = logging.getLogger("livecart.bus.memory")


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner: murmur2 of the key bytes."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class _Group:
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    members: list[_MemberSubscription] = field(default_factory=list)
    generation: int = 0


class MemoryBus(EventBus):
    backend = "memory"

    def __init__(self, partitions: int = 8, *, handler_attempts: int = HANDLER_ATTEMPTS) -> None:
        self.partitions = partitions
        self.handler_attempts = handler_attempts
        self._logs: dict[str, list[list[Event]]] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = asyncio.Condition()
        self._version = 0
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.stop()
        self._running = False

    async def check(self) -> None:
        if not self._running:
            raise RuntimeError("in-process bus is stopped")

    def _log(self, topic: str) -> list[list[Event]]:
        if topic not in self._logs:
            self._logs[topic] = [[] for _ in range(self.partitions)]
        return self._logs[topic]

    async def _wait_past(self, version: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version != version)

    async def _notify(self) -> None:
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes | Message,
        headers: Iterable[tuple[str, bytes]] = (),
    ) -> None:
        with trace.use_span(publish_span(topic), end_on_exit=True):
            partitions = self._log(topic)
            p = partition_for(key, len(partitions))
            event = Event(
                topic=topic,
                key=key,
                value=encode(value),
                headers=(*tuple(headers), *inject_headers()),
                partition=p,
                offset=len(partitions[p]),
            )
            partitions[p].append(event)
        BUS_PUBLISHED.labels(self.backend, topic).inc()
        await self._notify()

    async def publish_many(self, events: Sequence[Outgoing]) -> None:
        topics = Counter(e.topic for e in events)
        with trace.use_span(publish_span(",".join(sorted(topics))), end_on_exit=True):
            context = inject_headers()
            for e in events:
                partitions = self._log(e.topic)
                p = partition_for(e.key, len(partitions))
                partitions[p].append(
                    Event(
                        topic=e.topic,
                        key=e.key,
                        value=encode(e.value),
                        headers=(*e.headers, *context),
                        partition=p,
                        offset=len(partitions[p]),
                    )
                )
        for name, count in topics.items():
            BUS_PUBLISHED.labels(self.backend, name).inc(count)
        await self._notify()

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
        state = self._groups.setdefault(group, _Group())
        count_from_zero(self.backend, names, group)
        for topic in names:
            for p, entries in enumerate(self._log(topic)):
                start = 0 if from_beginning else len(entries)
                state.committed.setdefault((topic, p), start)
        member = _MemberSubscription(self, group, state, names, handler, commit=commit)
        state.members.append(member)
        state.generation += 1
        member.task = asyncio.create_task(member.run(), name=f"bus-memory-{group}")
        await self._notify()
        return member


class _MemberSubscription(Subscription):
    def __init__(
        self,
        bus: MemoryBus,
        group: str,
        state: _Group,
        topics: list[str],
        handler: Handler,
        *,
        commit: bool = True,
    ) -> None:
        self.bus = bus
        # Where this member reads: the group's committed offsets, or, for a member that does
        # not commit, its own copy of them.
        self.offsets = state.committed if commit else dict(state.committed)
        self.group = group
        self.state = state
        self.topics = topics
        self.handler = handler
        self.task: asyncio.Task[None] | None = None

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """Round-robin over the sorted partitions of this member's topics, in join order."""
        if self not in self.state.members:
            return frozenset()
        owned = set()
        for topic in self.topics:
            sharing = [m for m in self.state.members if topic in m.topics]
            index = sharing.index(self)
            for p in range(len(self.bus._log(topic))):
                if p % len(sharing) == index:
                    owned.add((topic, p))
        return frozenset(owned)

    async def positions(self, timeout_s: float = 30.0) -> dict[TopicPartition, int]:
        return {tp: self.offsets.get(tp, 0) for tp in self.assignment}

    async def run(self) -> None:
        """Keep one lane per owned partition, as the group's membership changes."""
        lanes: dict[TopicPartition, asyncio.Task[None]] = {}
        try:
            while True:
                seen = self.bus._version
                owned = self.assignment
                for tp in owned - lanes.keys():
                    lanes[tp] = asyncio.create_task(self._lane(tp), name=f"bus-memory-{tp}")
                gone = [lanes.pop(tp) for tp in lanes.keys() - owned]
                for task in gone:
                    task.cancel()  # what it had not committed, the partition's new owner reads
                await asyncio.gather(*gone, return_exceptions=True)
                await self.bus._wait_past(seen)
        finally:
            for task in lanes.values():
                task.cancel()
            await asyncio.gather(*lanes.values(), return_exceptions=True)

    async def _lane(self, tp: TopicPartition) -> None:
        """One partition's events in order: a retried event holds up this partition only."""
        bus, (topic, p) = self.bus, tp
        while True:
            seen = bus._version
            entries = bus._log(topic)[p]
            start = self.offsets.get(tp, 0)
            if start >= len(entries):
                await bus._wait_past(seen)
                continue
            event = entries[start]
            await deliver(bus, self.group, event, self.handler)
            self.offsets[tp] = event.offset + 1

    async def stop(self) -> None:
        if self in self.state.members:
            self.state.members.remove(self)
            self.state.generation += 1
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.bus._notify()
