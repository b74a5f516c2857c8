"""Settings of the transcode service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from livecart_core.settings import ServiceSettings


class TranscodeSettings(ServiceSettings):
    service_name: str = "transcode"
    http_port: int = 8083
    grpc_port: int = 50054
