"""WHEP playback (draft-ietf-wish-whep): a viewer POSTs an SDP offer, gets an answer and a
session URL to DELETE when it leaves.

- ``POST /whep/{room}``: ``application/sdp`` offer + Bearer token with scope ``play`` (and
  this room, if the token names one) → ``201``, the answer, ``Location`` of the session,
  STUN/TURN servers in ``Link`` headers.
- ``DELETE /whep/{room}/{session}`` → ``204``; the viewer's connection closes.
- ``PATCH`` (trickle ICE, ICE restart) is not supported → ``405`` with ``Allow``: the answer
  carries every candidate already.

Publishers reach a room through ingest's WHIP endpoint and a pipe (`livecart_relay.pipes`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request, Response

from livecart_core.auth import Principal, TokenAuthority
from livecart_media import whipwhep
from livecart_media.whipwhep import RoomKey
from livecart_relay.rooms import MediaRooms


def install_whep(
    app: FastAPI,
    rooms: MediaRooms,
    tokens: TokenAuthority,
    *,
    cors_origins: Sequence[str],
    ice_servers: Sequence[str] = (),
) -> None:
    """Add the WHEP routes to `app`, with CORS for browser players on `cors_origins`."""

    async def start(key: RoomKey, caller: Principal, request: Request) -> Response:
        offer = await whipwhep.read_offer(request)
        session = await rooms.subscribe(key, offer)
        return whipwhep.answer(session.answer, f"/whep/{key.room}/{session.id}", ice_servers)

    async def stop(key: RoomKey, caller: Principal, session: str, request: Request) -> Response:
        await rooms.unsubscribe(key, session)
        return Response(status_code=204)

    app.include_router(whipwhep.session_routes("whep", "play", tokens, start, stop))
    whipwhep.install_cors(app, cors_origins)
