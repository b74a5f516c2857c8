"""The viewer's page: ``GET /play/{room}?token=…`` plays the room in the browser over WHEP.

The page (``static/play.html``, dependency-free) POSTs its offer to this relay's
``/whep/{room}`` with the token as its Bearer pass, retries while the show is offline or
the relay is full, and DELETEs its session when the viewer leaves.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI

from livecart_media.whipwhep import install_room_page


def install_player_page(app: FastAPI) -> None:
    """Add ``GET /play/{room}`` to `app`."""
    page = (files("livecart_relay") / "static" / "play.html").read_bytes()
    install_room_page(app, "/play", page, "Watch a room (player page)")
