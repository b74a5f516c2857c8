"""WHIP ingest (RFC 9725): a publisher POSTs an SDP offer, gets an answer and a session URL
to DELETE when the broadcast ends.

- ``POST /whip/{room}``: ``application/sdp`` offer + Bearer token with scope ``publish``
  (and this room, if the token names one) → ``201``, the answer, ``Location`` of the
  session, STUN/TURN servers in ``Link`` headers (RFC 9725 §4.4). One publisher per room:
  another publisher gets ``409`` unless their token has scope ``publish:takeover``; the
  same publisher coming back replaces their own lost session.
- ``DELETE /whip/{room}/{session}`` → ``204``; the stream ends and the room closes.
- ``PATCH`` (trickle ICE, ICE restart) is not supported → ``405`` with ``Allow``, as RFC 9725
  §4.3 allows: the answer carries every candidate already.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from livecart_core.auth import Principal, TokenAuthority, require
from livecart_ingest.publishers import Publishers
from livecart_media import whipwhep


def install_whip(
    app: FastAPI,
    publishers: Publishers,
    tokens: TokenAuthority,
    *,
    cors_origins: Sequence[str],
    ice_servers: Sequence[str] = (),
) -> None:
    """Add the WHIP routes to `app`, with CORS for browser publishers on `cors_origins`."""
    app.include_router(whip_routes(publishers, tokens, ice_servers))
    whipwhep.install_cors(app, cors_origins)


def whip_routes(
    publishers: Publishers, tokens: TokenAuthority, ice_servers: Sequence[str] = ()
) -> APIRouter:
    router = APIRouter(prefix="/whip", tags=["whip"])
    publisher = Depends(require(tokens, "publish"))

    @router.post(
        "/{room}",
        status_code=201,
        summary="Go live in a room: SDP offer in, SDP answer out (WHIP)",
        response_class=Response,
    )
    async def start(room: str, request: Request, caller: Principal = publisher) -> Response:
        key = whipwhep.room_key(caller, room)
        offer = await whipwhep.read_offer(request)
        session = await publishers.publish(caller, key.room, offer)
        return whipwhep.answer(session.answer, f"/whip/{room}/{session.id}", ice_servers)

    @router.delete("/{room}/{session}", status_code=204, summary="End the broadcast (WHIP)")
    async def stop(room: str, session: str, caller: Principal = publisher) -> Response:
        await publishers.end(caller, whipwhep.room_key(caller, room).room, session)
        return Response(status_code=204)

    @router.patch("/{room}/{session}", summary="Trickle ICE / ICE restart: not supported")
    async def patch(room: str, session: str) -> Response:
        return whipwhep.refuse_method(
            whipwhep.SESSION_ALLOW, "trickle ICE and ICE restarts are not supported"
        )

    @router.options("/{room}", summary="What the WHIP endpoint allows")
    async def endpoint_options(room: str) -> Response:
        return Response(status_code=204, headers={"Allow": whipwhep.ENDPOINT_ALLOW})

    @router.options("/{room}/{session}", summary="What a WHIP session allows")
    async def session_options(room: str, session: str) -> Response:
        return Response(status_code=204, headers={"Allow": whipwhep.SESSION_ALLOW})

    return router
