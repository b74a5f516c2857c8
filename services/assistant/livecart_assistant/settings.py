"""Settings of the assistant service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from livecart_core.settings import ServiceSettings


class AssistantSettings(ServiceSettings):
    service_name: str = "assistant"
    http_port: int = 8086
    grpc_port: int = 50057
