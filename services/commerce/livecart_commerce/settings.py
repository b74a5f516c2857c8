"""Settings of the commerce service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from livecart_core.settings import ServiceSettings


class CommerceSettings(ServiceSettings):
    service_name: str = "commerce"
    http_port: int = 8085
    grpc_port: int = 50056
    payment_timeout_s: float = Field(default=600.0, gt=0, description="unpaid orders expire after")
    expiry_interval_s: float = Field(default=1.0, gt=0, description="how often due orders expire")
    flash_sale_coalesce: bool = Field(
        default=True,
        description="group-commit reservations; false is the naive row lock per order (bench)",
    )
    payment_webhook_secret: SecretStr | None = Field(
        default=None, description="signs provider webhooks; derived from the auth secret if unset"
    )
    outbox_idle_s: float = Field(default=0.05, gt=0, description="relay pause when nothing is new")
    outbox_retention_s: float = Field(
        default=3600.0, gt=0, description="published outbox rows are deleted after"
    )
    lottery_draw_delay_s: float = Field(
        default=2.0,
        ge=0,
        description="lotteries are drawn this long after they close, so late chat still enters",
    )
