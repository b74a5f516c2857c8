"""Settings of the ingest service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from pydantic import Field

from livecart_core.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = 8081
    grpc_port: int = 50052

    relay_grpc_address: str = "127.0.0.1:50053"
    """The relays (gRPC ``host:port``, comma-separated; a name resolving to several
    addresses, such as a headless Service, means all of them) each room is piped to."""
    edge: str = "local"
    """This edge's id (e.g. ``sea-1``), named in stream lifecycle events."""
    max_publishers: int = Field(default=50, ge=0)
    """WHIP publishers this process takes; more are told 503 + Retry-After."""
    retry_after_s: int = Field(default=5, ge=1)
    connect_timeout_s: float = Field(default=15.0, gt=0)
    """A publisher whose ICE and DTLS are not up this long after its offer is closed, and its
    slot freed."""
    ice_host_addresses: list[str] = Field(default_factory=list)
    """The addresses announced as ICE host candidates (JSON list); empty: every interface
    aioice finds, which never includes 127.0.0.1."""
    ice_port_min: int = Field(default=0, ge=0, le=65535)
    ice_port_max: int = Field(default=0, ge=0, le=65535)
    """The UDP ports ICE host candidates bind in (both 0: any the OS picks), for firewalls
    and Kubernetes Services; one port per publisher."""
    ice_servers: list[str] = Field(default_factory=list)
    """STUN/TURN servers announced to publishers in WHIP ``Link`` headers (JSON list of
    URLs; TURN as ``turn:host:port?transport=udp username=u credential=c``)."""
    cors_allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    """Origins whose browser pages may publish over WHIP (JSON list)."""
    max_publish_bitrate: int = Field(default=2_500_000, ge=100_000)
    """The most a publisher is told (REMB) to send, bits per second."""
    min_publish_bitrate: int = Field(default=150_000, ge=30_000)
    """The least the loss-based estimate goes down to, bits per second."""
