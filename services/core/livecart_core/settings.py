"""Typed settings from the environment, one class per service, validated at start-up.

Shared settings read ``LIVECART_*``; a service subclasses :class:`ServiceSettings`, sets its
default ports and adds its own fields. Ports are per process (``LIVECART_HTTP_PORT``), so the
all-in-one runner passes them as arguments, which take priority over the environment.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from livecart_core.errors import ConfigError

BusBackend = Literal["kafka", "memory"]


class ServiceSettings(BaseSettings):
    """What every Livecart service reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="LIVECART_", extra="ignore", frozen=True)

    service_name: str = "livecart"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)

    bus: BusBackend = "kafka"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_connect_timeout_s: float = Field(default=10.0, gt=0)
    kafka_topic_partitions: int = Field(default=8, ge=1)
    # Non-transient handler failures before an event is dead-lettered (bus/base.py).
    bus_handler_attempts: int = Field(default=5, ge=1, le=1000)

    database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)
    database_connect_timeout_s: float = Field(default=5.0, gt=0)
    migrate_on_start: bool = False

    auth_secret: SecretStr | None = None

    otlp_endpoint: str | None = None
    readiness_interval_s: float = Field(default=1.0, gt=0)
    # On SIGTERM: report unready, keep serving this long (load balancers move away), then stop.
    drain_s: float = Field(default=0.0, ge=0, le=120)

    @field_validator("auth_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        return value


S = TypeVar("S", bound="ServiceSettings")


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build ``cls`` from the environment (overrides win) or raise one clear ConfigError."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            env = f"LIVECART_{field.upper()}"
            shown = "***" if "secret" in field else repr(err.get("input"))
            problems.append(f"{env}={shown}: {err['msg']}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None
