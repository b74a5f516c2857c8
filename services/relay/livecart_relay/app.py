"""Wiring of the relay service: WHEP playback over the process's media rooms."""

from __future__ import annotations

from livecart_core.service import Service, ServiceDefinition
from livecart_relay.rooms import MediaRooms
from livecart_relay.settings import RelaySettings
from livecart_relay.whep import install_whep


async def setup(service: Service) -> None:
    """WHEP routes over one `MediaRooms`, kept as ``service.http_app.state.media_rooms``."""
    settings = service.settings
    assert isinstance(settings, RelaySettings)
    rooms = MediaRooms(
        max_subscribers=settings.max_subscribers,
        retry_after_s=settings.retry_after_s,
        ice_host_addresses=settings.ice_host_addresses,
    )
    service.http_app.state.media_rooms = rooms
    install_whep(service.http_app, rooms, service.tokens, cors_origins=settings.cors_allow_origins)
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
)
