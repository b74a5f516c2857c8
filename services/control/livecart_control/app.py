"""Wiring of the control service."""

from __future__ import annotations

from livecart_control.settings import ControlSettings
from livecart_core.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="control",
    package="livecart_control",
    settings=ControlSettings,
    uses_database=True,
)
