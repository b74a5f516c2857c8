"""The event bus: one interface, a Kafka backend and an in-process backend with its semantics."""

from __future__ import annotations

from livecart_core.bus.base import (
    DEAD_LETTER_HEADERS,
    Event,
    EventBus,
    Handler,
    Outgoing,
    Subscription,
    dead_letter_topic,
)
from livecart_core.bus.failures import PoisonEvent, Transient, is_transient
from livecart_core.bus.kafka import KafkaBus
from livecart_core.bus.memory import MemoryBus
from livecart_core.settings import ServiceSettings

__all__ = [
    "DEAD_LETTER_HEADERS",
    "Event",
    "EventBus",
    "Handler",
    "KafkaBus",
    "MemoryBus",
    "Outgoing",
    "PoisonEvent",
    "Subscription",
    "Transient",
    "create_bus",
    "dead_letter_topic",
    "is_transient",
]


def create_bus(settings: ServiceSettings) -> EventBus:
    """The backend the settings name (``LIVECART_BUS``)."""
    if settings.bus == "memory":
        return MemoryBus(
            partitions=settings.kafka_topic_partitions,
            handler_attempts=settings.bus_handler_attempts,
        )
    return KafkaBus(
        settings.kafka_bootstrap,
        partitions=settings.kafka_topic_partitions,
        connect_timeout_s=settings.kafka_connect_timeout_s,
        handler_attempts=settings.bus_handler_attempts,
    )
