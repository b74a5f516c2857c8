"""Wiring of the relay service."""

from __future__ import annotations

from livecart_core.service import ServiceDefinition
from livecart_relay.settings import RelaySettings

SERVICE = ServiceDefinition(
    name="relay",
    package="livecart_relay",
    settings=RelaySettings,
    uses_database=False,
)
