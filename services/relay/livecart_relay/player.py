"""The viewer's page: ``GET /play/{room}?token=…`` plays the room in the browser over WHEP.

The page (``static/play.html``, dependency-free) POSTs its offer to this relay's
``/whep/{room}`` with the token as its Bearer pass, retries while the show is offline or
the relay is full, and DELETEs its session when the viewer leaves.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from livecart_core.errors import InvalidArgument
from livecart_media.whipwhep import ROOM_ID


def install_player_page(app: FastAPI) -> None:
    """Add ``GET /play/{room}`` to `app`."""
    page = (files("livecart_relay") / "static" / "play.html").read_bytes()

    @app.get("/play/{room}", response_class=HTMLResponse, summary="Watch a room (player page)")
    async def play(room: str) -> HTMLResponse:
        if not ROOM_ID.match(room):
            raise InvalidArgument("a room id is 1 to 200 of A-Z a-z 0-9 . _ : -")
        # The URL carries the viewer's token: no caching by shared caches, no Referer.
        return HTMLResponse(
            page, headers={"Cache-Control": "private, no-cache", "Referrer-Policy": "no-referrer"}
        )
