"""Wiring of the relay service: WHEP playback and ingest pipes over the process's rooms, or,
with ``LIVECART_WORKERS`` above 1, a front over that many forwarding processes."""

from __future__ import annotations

from livecart.relay.v1.relay_service_pb2_grpc import add_RelayServiceServicer_to_server
from livecart_core.service import Service, ServiceDefinition
from livecart_media.ports import PortRange
from livecart_media.webrtc import check_host_addresses
from livecart_relay.front import Front, FrontServicer, install_front
from livecart_relay.pipes import SERVICE_NAME, RelayServicer
from livecart_relay.player import install_player_page
from livecart_relay.rooms import MediaRooms
from livecart_relay.settings import RelaySettings
from livecart_relay.whep import install_whep


async def setup(service: Service) -> None:
    """WHEP routes and the pipe API over one `MediaRooms` (``http_app.state.media_rooms``)."""
    settings = service.settings
    assert isinstance(settings, RelaySettings)
    install_player_page(service.http_app)
    if settings.workers > 1:
        front = Front(settings)
        await front.start()
        service.on_stop(front.stop)
        install_front(service.http_app, front, service.tokens, settings.cors_allow_origins)
        add_RelayServiceServicer_to_server(
            FrontServicer(front, service.tokens), service.grpc_server
        )
        return
    check_host_addresses(settings.ice_host_addresses, "LIVECART_ICE_HOST_ADDRESSES")
    rooms = MediaRooms(
        max_subscribers=settings.max_subscribers,
        retry_after_s=settings.retry_after_s,
        connect_timeout_s=settings.connect_timeout_s,
        ice_host_addresses=settings.ice_host_addresses,
        ice_ports=PortRange.from_settings(settings.ice_port_min, settings.ice_port_max, "ICE_PORT"),
        pipe_ports=PortRange.from_settings(
            settings.pipe_port_min, settings.pipe_port_max, "PIPE_PORT"
        ),
        pipe_host=settings.pipe_host,
        pipe_timeout_s=settings.pipe_timeout_s,
        publisher_grace_s=settings.publisher_grace_s,
    )
    service.http_app.state.media_rooms = rooms
    install_whep(
        service.http_app,
        rooms,
        service.tokens,
        cors_origins=settings.cors_allow_origins,
        ice_servers=settings.ice_servers,
    )
    add_RelayServiceServicer_to_server(RelayServicer(rooms, service.tokens), service.grpc_server)
    service.on_stop(rooms.close)


def media_rooms(service: Service) -> MediaRooms:
    """The rooms of a relay service set up by `setup`."""
    rooms = service.http_app.state.media_rooms
    assert isinstance(rooms, MediaRooms)
    return rooms


SERVICE = ServiceDefinition(
    name="relay",
    package="livecart_relay",
    settings=RelaySettings,
    uses_database=False,
    uses_auth=True,
    setup=setup,
    grpc_services=(SERVICE_NAME,),
)
