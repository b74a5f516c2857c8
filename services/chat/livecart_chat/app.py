"""Wiring of the chat service."""

from __future__ import annotations

from livecart_chat.settings import ChatSettings
from livecart_core.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="chat",
    package="livecart_chat",
    settings=ChatSettings,
    uses_database=True,
)
