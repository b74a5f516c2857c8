"""The host's page: ``GET /publish/{room}?token=…`` goes live from the browser over WHIP.

The page (``static/publish.html``, dependency-free) previews the camera and microphone,
POSTs its offer to this ingest's ``/whip/{room}`` with the token as its Bearer pass when the
host presses Go live, reconnects when the connection drops, and DELETEs its session on Stop
or when the page goes away.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from livecart_core.errors import InvalidArgument
from livecart_media.whipwhep import ROOM_ID


def install_publisher_page(app: FastAPI) -> None:
    """Add ``GET /publish/{room}`` to `app`."""
    page = (files("livecart_ingest") / "static" / "publish.html").read_bytes()

    @app.get("/publish/{room}", response_class=HTMLResponse, summary="Go live (publisher page)")
    async def publish(room: str) -> HTMLResponse:
        if not ROOM_ID.match(room):
            raise InvalidArgument("a room id is 1 to 200 of A-Z a-z 0-9 . _ : -")
        # The URL carries the host's token: no caching by shared caches, no Referer.
        return HTMLResponse(
            page, headers={"Cache-Control": "private, no-cache", "Referrer-Policy": "no-referrer"}
        )
