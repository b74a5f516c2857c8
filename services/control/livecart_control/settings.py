"""Settings of the control service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from livecart_core.settings import ServiceSettings


class ControlSettings(ServiceSettings):
    service_name: str = "control"
    http_port: int = 8080
    grpc_port: int = 50051
