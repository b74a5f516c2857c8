"""Wiring of the assistant service."""

from __future__ import annotations

from livecart_core.service import ServiceDefinition

from livecart_assistant.settings import AssistantSettings

SERVICE = ServiceDefinition(
    name="assistant",
    package="livecart_assistant",
    settings=AssistantSettings,
    uses_database=True,
)
