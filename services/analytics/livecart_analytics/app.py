"""Wiring of the analytics service."""

from __future__ import annotations

from livecart_analytics.settings import AnalyticsSettings
from livecart_core.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="analytics",
    package="livecart_analytics",
    settings=AnalyticsSettings,
    uses_database=True,
)
