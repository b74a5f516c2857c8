"""Access tokens: signed JWTs naming a tenant, a subject and the scopes they grant.

Control issues them (tenants trade API keys for tokens); every service verifies them with the
shared ``LIVECART_AUTH_SECRET``. HTTP routes declare what they need with :func:`require`,
which answers 401 for a missing or bad token and 403 for a missing scope.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from livecart_core.errors import PermissionDenied, Unauthenticated
from livecart_core.rules import ROOM_ID, room_id, text_problem

ISSUER = "livecart"
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
# The claims :meth:`TokenAuthority.issue` writes: a token with others goes the general way.
_ISSUED_CLAIMS = frozenset({"iss", "tenant", "sub", "scope", "iat", "exp", "room"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant they act in, their id, and what they may do."""

    tenant_id: str
    subject: str
    scopes: frozenset[str]
    room: str | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this token does not grant {scope!r}")

    def require_room(self, room: str) -> None:
        """Refuse a room-bound token outside its room (the one rule for every room-scoped
        endpoint: REST, gRPC, WebSocket, WHIP/WHEP, the pipe)."""
        if self.room is not None and self.room != room:
            raise PermissionDenied(f"this token is for room {self.room!r}, not {room!r}")


class TokenAuthority:
    """Issues and verifies tokens with one shared secret."""

    def __init__(self, secret: str) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        # A prepared key: PyJWT otherwise re-checks a plain secret for PEM/SSH formats on every
        # decode, which is most of its cost per request.
        self._key = jwt.PyJWK(
            {"kty": "oct", "k": base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()},
            algorithm=ALGORITHM,
        )
        self._mac_key = secret.encode()
        self._header = self.issue("-", "-", ()).partition(".")[0]

    def issue(
        self,
        tenant_id: str,
        subject: str,
        scopes: Iterable[str],
        *,
        room: str | None = None,
        ttl_s: float = 3600.0,
    ) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "tenant": tenant_id,
            "sub": subject,
            "scope": " ".join(sorted(set(scopes))),
            "iat": now,
            "exp": now + int(ttl_s),
        }
        if room is not None:
            claims["room"] = room
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The token's principal; Unauthenticated (with the reason) when it is not valid."""
        claims = self._issued_here(token)
        if claims is None:
            try:
                claims = jwt.decode(
                    token,
                    self._key,
                    algorithms=[ALGORITHM],
                    issuer=ISSUER,
                    options={"require": ["exp", "iss", "sub", "tenant"]},
                )
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("the token has expired") from None
            except jwt.InvalidTokenError as exc:
                raise Unauthenticated(f"invalid token: {exc}") from None
        for claim in ("tenant", "sub", "scope", "room"):
            if claim in claims and not isinstance(claims[claim], str):
                raise Unauthenticated(f"invalid token: the {claim!r} claim must be a string")
        for claim in ("tenant", "sub"):
            if not claims[claim] or text_problem(claims[claim]):
                raise Unauthenticated(f"invalid token: the {claim!r} claim is not a usable name")
        room = claims.get("room")
        if room is not None and not ROOM_ID.match(room):
            raise Unauthenticated("invalid token: the 'room' claim is not a room id")
        return Principal(
            tenant_id=claims["tenant"],
            subject=claims["sub"],
            scopes=frozenset(claims.get("scope", "").split()),
            room=room,
        )

    def _issued_here(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token exactly as :meth:`issue` writes them (its
        header, its claims), checked in a tenth of PyJWT's time: every request of every service
        verifies a token, and a flash sale's buyers each bring a new one. None for any other
        token, which PyJWT then accepts or refuses with its reason; so this only ever accepts
        what PyJWT would, with the same claims."""
        if not token.isascii():
            return None
        header, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if header != self._header or not payload or "." in signature:
            return None
        mac = hmac.digest(self._mac_key, f"{header}.{payload}".encode(), "sha256")
        if not hmac.compare_digest(base64.urlsafe_b64encode(mac).rstrip(b"="), signature.encode()):
            return None
        try:
            text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
            claims = json.loads(text)  # from str: json skips guessing the bytes' encoding
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            return None
        if not isinstance(claims, dict) or not claims.keys() <= _ISSUED_CLAIMS:
            return None
        exp, iat = claims.get("exp"), claims.get("iat", 0)
        now = time.time()
        if (
            type(exp) is not int
            or type(iat) is not int
            or not iat <= now < exp
            or claims.get("iss") != ISSUER
            or not isinstance(claims.get("sub"), str)
            or "tenant" not in claims
        ):
            return None
        return claims


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer <token>")
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def grpc_principal(
    authority: TokenAuthority,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    scope: str,
    *,
    room: str | None = None,
) -> Principal:
    """The caller of a gRPC method, from its ``authorization`` (or ``authorization-bin``)
    metadata, holding ``scope`` and, for a room-scoped method, allowed in ``room``.

    Raises InvalidArgument (a malformed room id), Unauthenticated or PermissionDenied, which the
    server interceptor turns into INVALID_ARGUMENT, UNAUTHENTICATED and PERMISSION_DENIED.
    """
    header = next((v for k, v in (metadata or ()) if k in _AUTH_METADATA), None)
    if isinstance(header, bytes):
        try:
            token: str | None = header.decode()
        except UnicodeDecodeError:
            raise Unauthenticated("the authorization metadata is not UTF-8 text") from None
    else:
        token = header
    if room is not None:
        room_id(room)
    caller = authority.verify(bearer_token(token))
    caller.require(scope)
    if room is not None:
        caller.require_room(room)
    return caller


_AUTH_METADATA = ("authorization", "authorization-bin")
_ROOM_PARAMS = ("room_id", "room")


# Declares the bearer scheme in OpenAPI (the Authorize button of /docs); errors are ours.
_BEARER = Depends(HTTPBearer(auto_error=False, description="a Livecart access token"))


def require(authority: TokenAuthority, scope: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, holding ``scope``.

    On a route with a ``{room_id}`` (or ``{room}``) path parameter the principal must also be
    allowed in that room: a room-bound token is refused in every other room, whatever the route.
    """

    async def principal(
        request: Request, credentials: HTTPAuthorizationCredentials | None = _BEARER
    ) -> Principal:
        token = (
            credentials.credentials
            if credentials is not None
            else bearer_token(request.headers.get("authorization"))
        )
        caller = authority.verify(token)
        caller.require(scope)
        for name in _ROOM_PARAMS:
            room = request.path_params.get(name)
            if isinstance(room, str):
                # A malformed room is the request's fault (400) whoever asks.
                caller.require_room(room_id(room, "the room id"))
        return caller

    return principal
