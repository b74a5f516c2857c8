"""The host's page: ``GET /publish/{room}?token=…`` goes live from the browser over WHIP.

The page (``static/publish.html``, dependency-free) previews the camera and microphone,
POSTs its offer to this ingest's ``/whip/{room}`` with the token as its Bearer pass when the
host presses Go live, reconnects when the connection drops, and DELETEs its session on Stop
or when the page goes away.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI

from livecart_media.whipwhep import install_room_page


def install_publisher_page(app: FastAPI) -> None:
    """Add ``GET /publish/{room}`` to `app`."""
    page = (files("livecart_ingest") / "static" / "publish.html").read_bytes()
    install_room_page(app, "/publish", page, "Go live (publisher page)")
