"""The HTTP conventions WHIP (RFC 9725, ingest) and WHEP (draft-ietf-wish-whep, relay) share.

Both take an ``application/sdp`` offer with a Bearer token, answer ``201`` with the SDP
answer and a ``Location`` to DELETE, announce ICE servers in ``Link`` headers, and need
CORS for browser pages on other origins. One copy lives here so the two endpoints cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from aiortc import RTCSessionDescription
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.cors import CORSMiddleware

from livecart_core import rules
from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.errors import InvalidArgument
from livecart_media.errors import OverCapacity, PayloadTooLarge

SDP = "application/sdp"
MAX_SDP_BYTES = 64 * 1024
SESSION_ALLOW = "DELETE, OPTIONS"
ENDPOINT_ALLOW = "POST, OPTIONS"


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """CORS for browser publishers and players on `origins`, and the 503 Retry-After answer."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
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


@dataclass(frozen=True, slots=True)
class RoomKey:
    """A live room: rooms are named per tenant."""

    tenant: str
    room: str


def room_key(caller: Principal, room: str) -> RoomKey:
    """The caller's room `room`, if it is a valid room id the caller's token may use."""
    caller.require_room(rules.room_id(room, "the room id"))
    return RoomKey(caller.tenant_id, room)


async def read_offer(request: Request) -> RTCSessionDescription:
    """The request's SDP offer; 400 for a wrong type or non-SDP body, 413 over 64 KiB."""
    return RTCSessionDescription(sdp=await read_sdp(request), type="offer")


async def read_sdp(request: Request) -> str:
    """The request's body as SDP text, under the same rules as `read_offer`.

    A body declared too big is refused before any of it is read (a client that sent
    ``Expect: 100-continue`` then sends none); one found too big while reading is refused
    at once, and the server reads and drops the rest, so the client reads the 413."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != SDP:
        raise InvalidArgument(f"the body must be an SDP offer (Content-Type: {SDP})")
    too_large = PayloadTooLarge(f"an SDP offer may have at most {MAX_SDP_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_SDP_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            raise too_large
    try:
        sdp = body.decode()
    except UnicodeDecodeError:
        raise InvalidArgument("the SDP offer is not UTF-8 text") from None
    if not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise InvalidArgument("not an SDP offer: it must start with v=0 and have m= lines")
    return sdp


def ice_server_links(urls: Sequence[str]) -> str | None:
    """A ``Link`` header value announcing STUN/TURN servers (RFC 9725 §4.4), or None.

    Each entry is a URL (``stun:host:port``) or, for TURN with credentials,
    ``turn:host:port?transport=udp username=user credential=secret``.
    """
    links = []
    for entry in urls:
        url, *params = entry.split()
        link = f'<{url}>; rel="ice-server"'
        for param in params:
            name, _, value = param.partition("=")
            if name in ("username", "credential"):
                link += f'; {name}="{value}"'
        if url.startswith("turn"):
            link += '; credential-type="password"'
        links.append(link)
    return ", ".join(links) or None


def answer(sdp: str, location: str, ice_servers: Sequence[str] = ()) -> Response:
    """The ``201 Created`` answer to an offer."""
    headers = {"Location": location}
    link = ice_server_links(ice_servers)
    if link:
        headers["Link"] = link
    return Response(sdp, status_code=201, media_type=SDP, headers=headers)


def refuse_method(allow: str, why: str) -> Response:
    """``405`` naming what the resource allows."""
    return JSONResponse(
        {"error": "method_not_allowed", "message": why},
        status_code=405,
        headers={"Allow": allow},
    )


Start = Callable[[RoomKey, Principal, Request], Awaitable[Response]]
Stop = Callable[[RoomKey, Principal, str, Request], Awaitable[Response]]

_SDP_BODY = {"content": {SDP: {"schema": {"type": "string", "format": "sdp"}}}}
_ERROR_BODY = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    }
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_ALLOW = {
    "Allow": {"description": "the methods this resource allows", "schema": {"type": "string"}}
}


def _refusals(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    said = {
        400: "not SDP, a malformed offer or one breaking the WebRTC rules (the message says which)",
        401: "no valid Bearer token",
        403: "the token lacks the scope or names another room",
        404: "no such session",
        406: "no codec of the offer can be taken (the message names those that can)",
        409: "the room is live from another publisher",
        413: f"the offer is over {MAX_SDP_BYTES} bytes",
        503: "over capacity, a needed service down, or no ICE candidate to offer",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"description": why.get(f"s{status}", said[status]), **_ERROR_BODY}
    if 503 in out:
        out[503]["headers"] = _RETRY_AFTER
    return out


def session_routes(
    protocol: str, scope: str, tokens: TokenAuthority, start: Start, stop: Stop
) -> APIRouter:
    """The routes of a WHIP or WHEP endpoint (`protocol`: ``whip`` or ``whep``).

    ``POST /{protocol}/{room}`` checks the token (`scope`, room) and calls `start`;
    ``DELETE /{protocol}/{room}/{session}`` calls `stop`. ``PATCH`` (trickle ICE, ICE
    restart) is answered ``405`` as RFC 9725 §4.3.1 allows (every answer carries all its
    candidates). Every ``405`` and every ``OPTIONS`` answer names the same ``Allow``: the
    methods the resource supports (RFC 9110 §10.2.1), so PATCH is not among them.
    """
    router = APIRouter(prefix=f"/{protocol}", tags=[protocol])
    caller_of = Depends(require(tokens, scope))
    name = protocol.upper()
    publishing = protocol == "whip"
    action = "Go live in" if publishing else "Start watching"
    conflict = (409,) if publishing else ()
    missing = () if publishing else (404,)

    @router.post(
        "/{room}",
        status_code=201,
        summary=f"{action} a room: SDP offer in, SDP answer out ({name})",
        response_class=Response,
        openapi_extra={"requestBody": {"required": True, **_SDP_BODY}},
        responses={
            201: {
                "description": "the SDP answer, with every ICE candidate",
                **_SDP_BODY,
                "headers": {
                    "Location": {
                        "description": "the session, to DELETE when done",
                        "schema": {"type": "string"},
                    },
                    "Link": {
                        "description": 'STUN/TURN servers, rel="ice-server" (RFC 9725 §4.6)',
                        "schema": {"type": "string"},
                    },
                },
            },
            **_refusals(
                400,
                401,
                403,
                *missing,
                406,
                *conflict,
                413,
                503,
                s404="the room has no publisher",
            ),
        },
    )
    async def post(room: str, request: Request, caller: Principal = caller_of) -> Response:
        return await start(room_key(caller, room), caller, request)

    @router.delete(
        "/{room}/{session}",
        status_code=204,
        summary=f"End the session ({name})",
        response_class=Response,
        responses={204: {"description": "ended"}, **_refusals(400, 401, 403, 404)},
    )
    async def delete(
        room: str, session: str, request: Request, caller: Principal = caller_of
    ) -> Response:
        return await stop(room_key(caller, room), caller, session, request)

    not_allowed: dict[int | str, dict[str, Any]] = {
        405: {"description": "not supported", "headers": _ALLOW, **_ERROR_BODY}
    }

    # Answered (405 with Allow) but not in the schema: a documented operation is one the
    # resource supports, and Allow must list exactly those.
    @router.patch(
        "/{room}/{session}",
        summary="Trickle ICE / ICE restart: not supported",
        response_class=Response,
        responses=not_allowed,
        include_in_schema=False,
    )
    async def patch(room: str, session: str) -> Response:
        return refuse_method(SESSION_ALLOW, "trickle ICE and ICE restarts are not supported")

    allowed: dict[int | str, dict[str, Any]] = {
        204: {"description": "what the resource allows", "headers": _ALLOW}
    }

    @router.options(
        "/{room}",
        status_code=204,
        summary=f"What the {name} endpoint allows",
        response_class=Response,
        responses=allowed,
    )
    async def endpoint_options(room: str) -> Response:
        return Response(status_code=204, headers={"Allow": ENDPOINT_ALLOW, "Accept-Post": SDP})

    @router.options(
        "/{room}/{session}",
        status_code=204,
        summary=f"What a {name} session allows",
        response_class=Response,
        responses=allowed,
    )
    async def session_options(room: str, session: str) -> Response:
        return Response(status_code=204, headers={"Allow": SESSION_ALLOW})

    # Any other method gets the same 405 and Allow, not the router's bare default.
    @router.api_route(
        "/{room}", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def endpoint_refusal(room: str, request: Request) -> Response:
        return refuse_method(
            ENDPOINT_ALLOW, f"{request.method} is not allowed on a {name} endpoint"
        )

    @router.api_route(
        "/{room}/{session}", methods=["GET", "HEAD", "PUT", "POST"], include_in_schema=False
    )
    async def session_refusal(room: str, session: str, request: Request) -> Response:
        return refuse_method(SESSION_ALLOW, f"{request.method} is not allowed on a {name} session")

    return router


SHARED_SCRIPT = "/static/livecart-whipwhep.js"


def install_room_page(app: FastAPI, prefix: str, page: bytes, summary: str) -> None:
    """Serve `page` (a publisher's or viewer's HTML page) at ``GET {prefix}/{room}``, and the
    script the pages share at `SHARED_SCRIPT`.

    The page reads its token from its own URL, so it is never cached by shared caches and
    never sent on as a Referer."""
    if not any(getattr(route, "path", None) == SHARED_SCRIPT for route in app.routes):
        script = (files("livecart_media") / "static" / "whipwhep.js").read_bytes()

        @app.get(SHARED_SCRIPT, include_in_schema=False)
        async def shared_script() -> Response:
            return Response(
                script,
                media_type="text/javascript",
                headers={"Cache-Control": "public, max-age=300"},
            )

    @app.get(f"{prefix}/{{room}}", response_class=HTMLResponse, summary=summary)
    async def room_page(room: str) -> HTMLResponse:
        rules.room_id(room, "the room id")
        return HTMLResponse(
            page, headers={"Cache-Control": "private, no-cache", "Referrer-Policy": "no-referrer"}
        )
