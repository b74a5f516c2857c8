"""WHEP playback (draft-ietf-wish-whep): a viewer POSTs an SDP offer, gets an answer and a
session URL to DELETE when it leaves.

- ``POST /whep/{room}``: ``application/sdp`` offer + Bearer token with scope ``play`` (and
  this room, if the token names one) → ``201``, the answer, ``Location`` of the session.
- ``DELETE /whep/{room}/{session}`` → ``204``; the viewer's connection closes.
- ``PATCH`` (trickle ICE, ICE restart) is not supported → ``405`` with ``Allow``: the answer
  carries every candidate already.

Publishers reach a room through `MediaRooms.publish`; their WHIP endpoint is ingest's.
"""

from __future__ import annotations

import re

from aiortc import RTCSessionDescription
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.errors import InvalidArgument, PermissionDenied
from livecart_relay.errors import OverCapacity, PayloadTooLarge
from livecart_relay.rooms import MediaRooms, RoomKey

SDP = "application/sdp"
MAX_SDP_BYTES = 64 * 1024
ROOM_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
SESSION_ALLOW = "DELETE, OPTIONS"
ENDPOINT_ALLOW = "POST, OPTIONS"


def install_whep(
    app: FastAPI, rooms: MediaRooms, tokens: TokenAuthority, *, cors_origins: list[str]
) -> None:
    """Add the WHEP routes to `app`, with CORS for browser players on `cors_origins`."""
    app.include_router(whep_routes(rooms, tokens))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins,
        allow_methods=["POST", "DELETE", "PATCH", "OPTIONS"],
        # Named: a browser does not let `*` cover Authorization.
        allow_headers=["Authorization", "Content-Type", "If-Match"],
        expose_headers=["Location", "Allow", "Retry-After", "Link", "ETag"],
        max_age=600,
    )

    @app.exception_handler(OverCapacity)
    async def over_capacity(request: Request, exc: OverCapacity) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "message": str(exc)},
            status_code=exc.http_status,
            headers={"Retry-After": str(exc.retry_after_s)},
        )


def whep_routes(rooms: MediaRooms, tokens: TokenAuthority) -> APIRouter:
    router = APIRouter(prefix="/whep", tags=["whep"])
    viewer = Depends(require(tokens, "play"))

    @router.post(
        "/{room}",
        status_code=201,
        summary="Start watching a room: SDP offer in, SDP answer out (WHEP)",
        response_class=Response,
    )
    async def start(room: str, request: Request, caller: Principal = viewer) -> Response:
        key = _room_key(caller, room)
        offer = await _read_offer(request)
        session = await rooms.subscribe(key, offer)
        return Response(
            session.answer,
            status_code=201,
            media_type=SDP,
            headers={"Location": f"/whep/{room}/{session.id}"},
        )

    @router.delete("/{room}/{session}", status_code=204, summary="Stop watching (WHEP)")
    async def stop(room: str, session: str, caller: Principal = viewer) -> Response:
        await rooms.unsubscribe(_room_key(caller, room), session)
        return Response(status_code=204)

    @router.patch("/{room}/{session}", summary="Trickle ICE / ICE restart: not supported")
    async def patch(room: str, session: str) -> Response:
        return _refuse_method(SESSION_ALLOW, "trickle ICE and ICE restarts are not supported")

    @router.options("/{room}", summary="What the WHEP endpoint allows")
    async def endpoint_options(room: str) -> Response:
        return Response(status_code=204, headers={"Allow": ENDPOINT_ALLOW})

    @router.options("/{room}/{session}", summary="What a WHEP session allows")
    async def session_options(room: str, session: str) -> Response:
        return Response(status_code=204, headers={"Allow": SESSION_ALLOW})

    return router


def _room_key(caller: Principal, room: str) -> RoomKey:
    if not ROOM_ID.match(room):
        raise InvalidArgument("a room id is 1 to 200 of A-Z a-z 0-9 . _ : -")
    if caller.room is not None and caller.room != room:
        raise PermissionDenied(f"this token is for room {caller.room!r}, not {room!r}")
    return RoomKey(caller.tenant_id, room)


async def _read_offer(request: Request) -> RTCSessionDescription:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != SDP:
        raise InvalidArgument(f"the body must be an SDP offer (Content-Type: {SDP})")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_SDP_BYTES:
        raise PayloadTooLarge(f"an SDP offer may have at most {MAX_SDP_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            raise PayloadTooLarge(f"an SDP offer may have at most {MAX_SDP_BYTES} bytes")
    try:
        sdp = body.decode()
    except UnicodeDecodeError:
        raise InvalidArgument("the SDP offer is not UTF-8 text") from None
    if not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise InvalidArgument("not an SDP offer: it must start with v=0 and have m= lines")
    return RTCSessionDescription(sdp=sdp, type="offer")


def _refuse_method(allow: str, why: str) -> Response:
    return JSONResponse(
        {"error": "method_not_allowed", "message": why},
        status_code=405,
        headers={"Allow": allow},
    )
