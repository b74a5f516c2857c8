"""Settings of the relay service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from livecart_core.settings import ServiceSettings


class RelaySettings(ServiceSettings):
    service_name: str = "relay"
    http_port: int = 8082
    grpc_port: int = 50053
