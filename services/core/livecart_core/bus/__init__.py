"""The event bus: one interface, a Kafka backend and an in-process backend with its semantics."""

from __future__ import annotations

from livecart_core.bus.base import Event, EventBus, Handler, Outgoing, Subscription
from livecart_core.bus.kafka import KafkaBus
from livecart_core.bus.memory import MemoryBus
from livecart_core.settings import ServiceSettings

__all__ = [
    "Event",
    "EventBus",
    "Handler",
    "KafkaBus",
    "MemoryBus",
    "Outgoing",
    "Subscription",
    "create_bus",
]


def create_bus(settings: ServiceSettings) -> EventBus:
    """The backend the settings name (``LIVECART_BUS``)."""
    if settings.bus == "memory":
        return MemoryBus(partitions=settings.kafka_topic_partitions)
    return KafkaBus(
        settings.kafka_bootstrap,
        partitions=settings.kafka_topic_partitions,
        connect_timeout_s=settings.kafka_connect_timeout_s,
    )
