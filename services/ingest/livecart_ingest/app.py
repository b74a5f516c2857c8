"""Wiring of the ingest service."""

from __future__ import annotations

from livecart_core.service import ServiceDefinition
from livecart_ingest.settings import IngestSettings

SERVICE = ServiceDefinition(
    name="ingest",
    package="livecart_ingest",
    settings=IngestSettings,
    uses_database=False,
)
