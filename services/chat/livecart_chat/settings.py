"""Settings of the chat service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from pydantic import Field

from livecart_core.settings import ServiceSettings


class ChatSettings(ServiceSettings):
    service_name: str = "chat"
    http_port: int = 8084
    grpc_port: int = 50055
    ws_host: str = "0.0.0.0"
    ws_port: int = Field(default=8094, ge=0, le=65535, description="the viewers' WebSocket port")
    ws_reuse_port: bool = Field(
        default=True, description="SO_REUSEPORT: node processes on one host share the port"
    )
    batch_ms: int = Field(default=100, ge=10, le=2000, description="at most one frame per this")
    comments_per_batch: int = Field(
        default=20, ge=1, le=1000, description="more in one batch are sampled down (per room)"
    )
    history_size: int = Field(default=2000, ge=10, description="recent events kept per room")
    recover_max: int = Field(default=2000, ge=1, description="most events one reconnect replays")
    slow_buffer_bytes: int = Field(
        default=256 * 1024, ge=1024, description="a viewer's unsent bytes that make it 'behind'"
    )
    behind_limit_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="unsent bytes that disconnect a viewer"
    )
    behind_limit_s: float = Field(
        default=10.0, gt=0, description="how long a viewer may stay behind before disconnection"
    )
    comment_burst: int = Field(default=5, ge=1, description="a user's comments in a burst")
    comment_rate_per_s: float = Field(default=1.0, gt=0, description="a user's sustained comments")
    flood_limit: int = Field(
        default=20, ge=1, description="refused or invalid messages per 10 s that close a socket"
    )
    keyword_poll_s: float = Field(default=1.0, gt=0, description="blocked-word list refresh")
    publish_timeout_s: float = Field(
        default=2.0, gt=0, le=30, description="a sender hears 'unavailable' if the bus takes longer"
    )
    commerce_grpc_address: str = Field(
        default="127.0.0.1:50056", description="commerce's gRPC host:port, for the buy button"
    )
    reserve_timeout_s: float = Field(
        default=2.0, gt=0, le=30, description="a buyer hears 'unavailable' if commerce takes longer"
    )
