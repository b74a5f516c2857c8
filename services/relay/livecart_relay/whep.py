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

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from livecart_core.auth import Principal, TokenAuthority, require
from livecart_media import whipwhep
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
    app.include_router(whep_routes(rooms, tokens, ice_servers))
    whipwhep.install_cors(app, cors_origins)


def whep_routes(
    rooms: MediaRooms, tokens: TokenAuthority, ice_servers: Sequence[str] = ()
) -> APIRouter:
    router = APIRouter(prefix="/whep", tags=["whep"])
    viewer = Depends(require(tokens, "play"))

    @router.post(
        "/{room}",
        status_code=201,
        summary="Start watching a room: SDP offer in, SDP answer out (WHEP)",
        response_class=Response,
    )
    async def start(room: str, request: Request, caller: Principal = viewer) -> Response:
        key = whipwhep.room_key(caller, room)
        offer = await whipwhep.read_offer(request)
        session = await rooms.subscribe(key, offer)
        return whipwhep.answer(session.answer, f"/whep/{room}/{session.id}", ice_servers)

    @router.delete("/{room}/{session}", status_code=204, summary="Stop watching (WHEP)")
    async def stop(room: str, session: str, caller: Principal = viewer) -> Response:
        await rooms.unsubscribe(whipwhep.room_key(caller, room), session)
        return Response(status_code=204)

    @router.patch("/{room}/{session}", summary="Trickle ICE / ICE restart: not supported")
    async def patch(room: str, session: str) -> Response:
        return whipwhep.refuse_method(
            whipwhep.SESSION_ALLOW, "trickle ICE and ICE restarts are not supported"
        )

    @router.options("/{room}", summary="What the WHEP endpoint allows")
    async def endpoint_options(room: str) -> Response:
        return Response(status_code=204, headers={"Allow": whipwhep.ENDPOINT_ALLOW})

    @router.options("/{room}/{session}", summary="What a WHEP session allows")
    async def session_options(room: str, session: str) -> Response:
        return Response(status_code=204, headers={"Allow": whipwhep.SESSION_ALLOW})

    return router
