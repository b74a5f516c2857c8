"""What every event bus backend must do, and the delivery loop they share.

Semantics (both backends): a topic has a fixed number of partitions; an event's key picks its
partition (Kafka's murmur2), so events with one key are delivered in publish order. A group's
members share the partitions; every group sees every event. Delivery is at least once: the
offset is committed only after the handler returns (or the event is dead-lettered), and an
event whose subscription stops while it is being handled is delivered again later. Partitions
are independent: an event being retried holds up the later events of its own partition only.

A handler that raises is retried with backoff (``RETRY_FIRST_S`` doubling to ``RETRY_MAX_S``),
and what happens next depends on whose fault the failure is (``failures.py``):

- Transient (a dependency is away: ``OSError``, timeouts, asyncpg connection, shutdown and
  interface errors, retriable Kafka errors, gRPC UNAVAILABLE/DEADLINE_EXCEEDED, or an explicit
  ``Transient``): retried for as long as it takes; nothing is skipped.
- Anything else: retried until it has failed ``handler_attempts`` times (the setting
  ``LIVECART_BUS_HANDLER_ATTEMPTS``, 5 by default); an explicit ``PoisonEvent`` or an
  undecodable protobuf counts as all of them. The event is then dead-lettered: published to
  ``<topic>.dead-letter`` (one per source topic, so a dead letter keeps its key's partition and
  can be replayed to where it came from) with its key, value and headers, plus the headers in
  ``DEAD_LETTER_HEADERS`` (source topic, partition, offset, group, the exception's type and
  message, the attempts made). It is logged, counted in
  ``livecart_bus_dead_letters_total{backend,topic,group}``, and only then committed, so the
  partition moves on. A dead-letter publish that fails is retried until it succeeds: an event
  is never dropped.
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

from livecart_core.bus.failures import is_poison, is_transient
from livecart_core.metrics import BUS_DEAD_LETTERS, BUS_HANDLED, BUS_HANDLER_FAILURES
from livecart_core.telemetry import extract_context, tracer

log = logging.getLogger("livecart.bus")
M = TypeVar("M", bound=Message)
Headers = tuple[tuple[str, bytes], ...]
TopicPartition = tuple[str, int]

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
HANDLER_ATTEMPTS = 5
DEAD_LETTER_SUFFIX = ".dead-letter"
# What a dead letter carries besides the event's own headers.
DEAD_LETTER_HEADERS = (
    "dead-letter-topic",
    "dead-letter-group",
    "dead-letter-partition",
    "dead-letter-offset",
    "dead-letter-error",  # the exception's type
    "dead-letter-reason",  # its message
    "dead-letter-attempts",
)
REASON_MAX_CHARS = 1000
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


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
    # Failures that are not transient before an event is dead-lettered (see the module doc).
    handler_attempts: int = HANDLER_ATTEMPTS

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


def count_from_zero(backend: str, topics: Iterable[str], group: str) -> None:
    """Export a subscription's dead-letter count before its first: Prometheus' ``increase()``
    sees no rise in a series that is born at 1, and the alert on it would never fire."""
    for topic in topics:
        BUS_DEAD_LETTERS.labels(backend, topic, group)


def dead_letter_topic(topic: str) -> str:
    """Where the events of ``topic`` that can never be handled go."""
    return topic + DEAD_LETTER_SUFFIX


async def deliver(bus: EventBus, group: str, event: Event, handler: Handler) -> None:
    """Run ``handler`` under a consumer span until it succeeds, retrying with backoff; an
    event that can never be handled is dead-lettered instead (the module doc has the policy).
    Returns when the event may be committed.

    Cancellation (the subscription stopping) propagates, leaving the event uncommitted.
    """
    parent = extract_context(event.headers)
    delay = RETRY_FIRST_S
    attempt = 1
    not_transient = 0
    while True:
        with tracer("livecart.bus").start_as_current_span(
            f"handle {event.topic}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": bus.backend,
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
            if failed is not None and (is_poison(failed) or not is_transient(failed)):
                not_transient = bus.handler_attempts if is_poison(failed) else not_transient + 1
                if not_transient >= bus.handler_attempts:
                    # Published inside the span: the dead letter stays in the event's trace.
                    await _dead_letter(bus, group, event, failed, attempt)
                    return
        if failed is None:
            BUS_HANDLED.labels(bus.backend, event.topic, group).inc()
            return
        BUS_HANDLER_FAILURES.labels(bus.backend, event.topic, group).inc()
        log.warning(
            "handler failed; retrying",
            exc_info=failed,
            extra={
                "topic": event.topic,
                "group": group,
                "partition": event.partition,
                "offset": event.offset,
                "transient": is_transient(failed),
                "retry_in_s": delay,
            },
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)
        attempt += 1


async def _dead_letter(
    bus: EventBus, group: str, event: Event, failed: Exception, attempts: int
) -> None:
    BUS_HANDLER_FAILURES.labels(bus.backend, event.topic, group).inc()
    # A reason may quote the event, and the event may be what failed (a lone surrogate).
    reason = str(failed)[:REASON_MAX_CHARS].encode("utf-8", "backslashreplace").decode()
    where = {
        "topic": event.topic,
        "group": group,
        "partition": event.partition,
        "offset": event.offset,
        "error": type(failed).__name__,
        "reason": reason,
        "attempts": attempts,
    }
    headers = [
        *((k, v) for k, v in event.headers if k not in _TRACE_HEADERS),
        *((f"dead-letter-{k}", str(v).encode()) for k, v in where.items()),
    ]
    destination = dead_letter_topic(event.topic)
    delay = RETRY_FIRST_S
    while True:
        try:
            await bus.publish(destination, event.key, event.value, headers)
            break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Committing without the dead letter would lose the event: wait for the bus.
            log.warning(
                "dead letter not published; retrying",
                extra={**where, "why": repr(exc), "retry_in_s": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
    BUS_DEAD_LETTERS.labels(bus.backend, event.topic, group).inc()
    log.error("event dead-lettered", exc_info=failed, extra={**where, "to": destination})
