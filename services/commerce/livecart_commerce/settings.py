"""Settings of the commerce service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from livecart_core.settings import ServiceSettings


class CommerceSettings(ServiceSettings):
    service_name: str = "commerce"
    http_port: int = 8085
    grpc_port: int = 50056
