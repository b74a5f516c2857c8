"""Wiring of the assistant service."""

from __future__ import annotations

from livecart_assistant.settings import AssistantSettings
from livecart_core.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="assistant",
    package="livecart_assistant",
    settings=AssistantSettings,
    uses_database=True,
)
