"""Settings of the relay service (environment: ``LIVECART_*``)."""

from __future__ import annotations

from pydantic import Field

from livecart_core.settings import ServiceSettings


class RelaySettings(ServiceSettings):
    service_name: str = "relay"
    http_port: int = 8082
    grpc_port: int = 50053

    workers: int = Field(default=1, ge=1, le=256)
    """Forwarding processes: 1 forwards in this process; more start a front (this process:
    HTTP, gRPC, pipe ports) and that many workers behind it, one per core."""
    max_subscribers: int = Field(default=500, ge=0)
    """WHEP viewers each forwarding process serves over all rooms; more are told 503 +
    Retry-After."""
    retry_after_s: int = Field(default=5, ge=1)
    connect_timeout_s: float = Field(default=15.0, gt=0)
    """A viewer whose ICE and DTLS are not up this long after its offer is closed, and its
    slot freed."""
    ice_host_addresses: list[str] = Field(default_factory=list)
    """The addresses announced as ICE host candidates (JSON list); empty: every interface
    aioice finds, which never includes 127.0.0.1."""
    ice_port_min: int = Field(default=0, ge=0, le=65535)
    ice_port_max: int = Field(default=0, ge=0, le=65535)
    """The UDP ports ICE host candidates bind in (both 0: any the OS picks), for firewalls
    and Kubernetes Services; one port per viewer. With workers, each
    gets an equal, disjoint slice."""
    cors_allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    """Origins whose browser pages may use WHEP (JSON list)."""
    ice_servers: list[str] = Field(default_factory=list)
    """STUN/TURN servers announced to viewers in WHEP ``Link`` headers (JSON list of URLs;
    TURN as ``turn:host:port?transport=udp username=u credential=c``)."""
    pipe_host: str = "127.0.0.1"
    """The address ingest's pipes reach this relay on (bound and announced); in a cluster,
    the pod's IP."""
    pipe_port_min: int = Field(default=0, ge=0, le=65535)
    pipe_port_max: int = Field(default=0, ge=0, le=65535)
    """The UDP ports rooms' pipes listen on (both 0: any the OS picks); one port per live
    room."""
    pipe_timeout_s: float = Field(default=10.0, gt=0)
    """A pipe silent this long has lost its publisher."""
    publisher_grace_s: float = Field(default=30.0, gt=0)
    """How long a room whose publisher was lost keeps its viewers waiting for it."""
