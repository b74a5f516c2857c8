"""Settings of the ingest service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from livecart_core.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = 8081
    grpc_port: int = 50052
