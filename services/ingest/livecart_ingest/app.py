"""Wiring of the ingest service: WHIP publishers, piped to the relay."""

from __future__ import annotations

from livecart_core.service import Service, ServiceDefinition
from livecart_ingest.publisher_page import install_publisher_page
from livecart_ingest.publishers import Publishers
from livecart_ingest.relays import Relays
from livecart_ingest.settings import IngestSettings
from livecart_ingest.whip import install_whip
from livecart_media.ports import PortRange
from livecart_media.webrtc import check_host_addresses


async def setup(service: Service) -> None:
    """WHIP routes over one `Publishers`, kept as ``service.http_app.state.publishers``."""
    settings = service.settings
    assert isinstance(settings, IngestSettings)
    check_host_addresses(settings.ice_host_addresses, "LIVECART_ICE_HOST_ADDRESSES")
    relays = Relays(settings.relay_grpc_address)
    publishers = Publishers(
        relays=relays,
        tokens=service.tokens,
        bus=service.bus,
        edge=settings.edge,
        max_publishers=settings.max_publishers,
        retry_after_s=settings.retry_after_s,
        connect_timeout_s=settings.connect_timeout_s,
        ice_host_addresses=settings.ice_host_addresses,
        ice_ports=PortRange.from_settings(settings.ice_port_min, settings.ice_port_max, "ICE_PORT"),
        max_bitrate=settings.max_publish_bitrate,
        min_bitrate=settings.min_publish_bitrate,
    )
    service.http_app.state.publishers = publishers
    install_whip(
        service.http_app,
        publishers,
        service.tokens,
        cors_origins=settings.cors_allow_origins,
        ice_servers=settings.ice_servers,
    )
    install_publisher_page(service.http_app)

    async def stop() -> None:
        await publishers.close()
        await relays.close()

    service.on_stop(stop)


def publishers(service: Service) -> Publishers:
    """The publishers of an ingest service set up by `setup`."""
    found = service.http_app.state.publishers
    assert isinstance(found, Publishers)
    return found


SERVICE = ServiceDefinition(
    name="ingest",
    package="livecart_ingest",
    settings=IngestSettings,
    uses_database=False,
    uses_auth=True,
    setup=setup,
)
