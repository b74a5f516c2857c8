"""Settings of the all-in-one runner (environment: ``LIVECART_DEV_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DevSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECART_DEV_", extra="ignore", frozen=True)

    dir: Path = Path(".livecart/dev")
    host: str = "127.0.0.1"
    http_port_base: int = Field(default=8080, ge=1, le=65000)
    grpc_port_base: int = Field(default=50051, ge=1, le=65000)
    postgres_port: int = Field(default=0, ge=0, le=65535)
