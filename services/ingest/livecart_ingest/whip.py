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

from fastapi import FastAPI, Request, Response

from livecart_core.auth import Principal, TokenAuthority
from livecart_ingest.publishers import Publishers
from livecart_media import whipwhep
from livecart_media.whipwhep import RoomKey


def install_whip(
    app: FastAPI,
    publishers: Publishers,
    tokens: TokenAuthority,
    *,
    cors_origins: Sequence[str],
    ice_servers: Sequence[str] = (),
) -> None:
    """Add the WHIP routes to `app`, with CORS for browser publishers on `cors_origins`."""

    async def start(key: RoomKey, caller: Principal, request: Request) -> Response:
        offer = await whipwhep.read_offer(request)
        session = await publishers.publish(caller, key.room, offer)
        return whipwhep.answer(session.answer, f"/whip/{key.room}/{session.id}", ice_servers)

    async def stop(key: RoomKey, caller: Principal, session: str, request: Request) -> Response:
        await publishers.end(caller, key.room, session)
        return Response(status_code=204)

    app.include_router(whipwhep.session_routes("whip", "publish", tokens, start, stop))
    whipwhep.install_cors(app, cors_origins)
