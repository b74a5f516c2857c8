"""Wiring of the transcode service."""

from __future__ import annotations

from livecart_core.service import ServiceDefinition
from livecart_transcode.settings import TranscodeSettings

SERVICE = ServiceDefinition(
    name="transcode",
    package="livecart_transcode",
    settings=TranscodeSettings,
    uses_database=False,
)
