"""Access tokens for the media path and chat, issued by control.

A tenant's backend holds a credential with scope ``tokens:issue`` and asks control for a
short-lived, room-bound token per merchant or viewer: ``POST /v1/tokens`` →
``{token, expires_at}``. Ingest (WHIP), the relay (WHEP) and chat verify it with the shared
signing secret; no call back to control is needed. The tenant is always the caller's.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StringConstraints

from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.rules import RoomId

ISSUE = "tokens:issue"
MAX_TTL_S = 24 * 3600
Scope = Literal["publish", "publish:takeover", "play", "chat"]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TokenRequest(BaseModel):
    room: RoomId
    """The room the token is good for (and only that room)."""
    subject: Subject
    """Who holds it: the merchant's or viewer's id in the tenant's own system."""
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    """``publish`` to go live (``publish:takeover`` to replace a live publisher), ``play`` to
    watch, ``chat`` to comment."""
    ttl_s: int = Field(default=3600, ge=60, le=MAX_TTL_S)
    """Seconds the token is valid; a live stream needs it only to start (and restart)."""


class IssuedToken(BaseModel):
    token: str
    expires_at: int
    """Unix time."""
    room: str
    scopes: list[str]


def token_routes(tokens: TokenAuthority) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["tokens"])
    issuer = Depends(require(tokens, ISSUE))

    @router.post("/tokens", status_code=201, summary="Issue a room-bound publish/play token")
    async def issue(body: TokenRequest, caller: Principal = issuer) -> IssuedToken:
        caller.require_room(body.room)  # a room-bound issuer issues for its own room only
        scopes: list[str] = sorted(set(body.scopes))
        token = tokens.issue(
            caller.tenant_id, body.subject, scopes, room=body.room, ttl_s=body.ttl_s
        )
        return IssuedToken(
            token=token, expires_at=int(time.time()) + body.ttl_s, room=body.room, scopes=scopes
        )

    return router
