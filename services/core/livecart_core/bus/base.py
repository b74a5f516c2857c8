"""What every event bus backend must do, and the delivery loop they share.

Semantics (both backends): a topic has a fixed number of partitions; an event's key picks its
partition (Kafka's murmur2), so events with one key are delivered in publish order. A group's
members share the partitions; every group sees every event. Delivery is at least once: the
offset is committed only after the handler returns, and a handler that raises is retried with
backoff until it succeeds or its subscription stops (then the event is delivered again later).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message
from opentelemetry import trace

from livecart_core.metrics import BUS_HANDLED, BUS_HANDLER_FAILURES
from livecart_core.telemetry import extract_context, tracer

log = logging.getLogger("livecart.bus")
M = TypeVar("M", bound=Message)
Headers = tuple[tuple[str, bytes], ...]
TopicPartition = tuple[str, int]

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class Event:
    """One delivered event: where it sits in its topic, and its payload."""

    topic: str
    key: str
    value: bytes
    headers: Headers
    partition: int
    offset: int

    def decode(self, message_type: type[M]) -> M:
        message = message_type()
        message.ParseFromString(self.value)
        return message

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


Handler = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event to publish with ``EventBus.publish_many``."""

    topic: str
    key: str
    value: bytes | Message
    headers: tuple[tuple[str, bytes], ...] = ()


class Subscription(ABC):
    """A running member of a consumer group."""

    @property
    @abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns right now."""

    @abstractmethod
    async def positions(self, timeout_s: float = 30.0) -> dict[TopicPartition, int]:
        """Wait until this member owns partitions and knows where it reads from in each; the
        offset it reads next, per partition. A member that joined at the end (a new group
        with ``from_beginning=False``) sees every event published after this returns."""

    @abstractmethod
    async def stop(self) -> None:
        """Leave the group; an event being handled is not committed and will be delivered again."""


class EventBus(ABC):
    """Publish keyed events and consume them in groups."""

    backend: str

    @abstractmethod
    async def start(self) -> None:
        """Connect; raise StartupError naming the setting when the backend cannot be reached."""

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes | Message,
        headers: Iterable[tuple[str, bytes]] = (),
    ) -> None:
        """Append one event; returns once it is durable (Kafka: acks=all)."""

    @abstractmethod
    async def publish_many(self, events: Sequence[Outgoing]) -> None:
        """Append ``events`` (in the given order within each key) under one span; returns once
        all are durable. Cheaper than one ``publish`` each for a batch (an outbox relay)."""

    @abstractmethod
    async def subscribe(
        self,
        topics: str | Sequence[str],
        group: str,
        handler: Handler,
        *,
        from_beginning: bool = True,
        commit: bool = True,
    ) -> Subscription:
        """Join ``group``; a group with no committed offset starts at the earliest event
        (``from_beginning``) or at the end. ``commit=False`` never commits what it handled (a
        reader that always starts afresh, such as a group of one per process)."""

    @abstractmethod
    async def check(self) -> None:
        """Raise when the backend is not reachable (used for readiness)."""


def encode(value: bytes | Message) -> bytes:
    return value if isinstance(value, bytes) else value.SerializeToString()


def publish_span(topic: str) -> trace.Span:
    return tracer("livecart.bus").start_span(f"publish {topic}", kind=trace.SpanKind.PRODUCER)


async def deliver(backend: str, group: str, event: Event, handler: Handler) -> None:
    """Run ``handler`` under a consumer span until it succeeds; backoff between failures.

    Cancellation (the subscription stopping) propagates, leaving the event uncommitted.
    """
    parent = extract_context(event.headers)
    delay = RETRY_FIRST_S
    attempt = 1
    while True:
        with tracer("livecart.bus").start_as_current_span(
            f"handle {event.topic}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": backend,
                "messaging.destination.name": event.topic,
                "messaging.consumer.group.name": group,
                "messaging.destination.partition.id": str(event.partition),
                "messaging.kafka.offset": event.offset,
                "livecart.attempt": attempt,
            },
            record_exception=True,
            set_status_on_exception=True,
        ):
            failed: Exception | None = None
            try:
                await handler(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = exc
        if failed is None:
            BUS_HANDLED.labels(backend, event.topic, group).inc()
            return
        BUS_HANDLER_FAILURES.labels(backend, event.topic, group).inc()
        log.warning(
            "handler failed; retrying",
            exc_info=failed,
            extra={
                "topic": event.topic,
                "group": group,
                "offset": event.offset,
                "retry_in_s": delay,
            },
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)
        attempt += 1
