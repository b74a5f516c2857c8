"""Wiring of the control service: room-bound access tokens for now."""

from __future__ import annotations

from livecart_control.settings import ControlSettings
from livecart_control.tokens import token_routes
from livecart_core.service import Service, ServiceDefinition


async def setup(service: Service) -> None:
    service.http_app.include_router(token_routes(service.tokens))


SERVICE = ServiceDefinition(
    name="control",
    package="livecart_control",
    settings=ControlSettings,
    uses_database=True,
    uses_auth=True,
    setup=setup,
)
