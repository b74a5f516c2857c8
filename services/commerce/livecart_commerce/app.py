"""Wiring of the commerce service."""

from __future__ import annotations

from livecart_commerce.settings import CommerceSettings
from livecart_core.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="commerce",
    package="livecart_commerce",
    settings=CommerceSettings,
    uses_database=True,
)
