"""Access tokens: signed JWTs naming a tenant, a subject and the scopes they grant.

Control issues them (tenants trade API keys for tokens); every service verifies them with the
shared ``LIVECART_AUTH_SECRET``. HTTP routes declare what they need with :func:`require`,
which answers 401 for a missing or bad token and 403 for a missing scope.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from livecart_core.errors import PermissionDenied, Unauthenticated

ISSUER = "livecart"
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32


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
        return Principal(
            tenant_id=str(claims["tenant"]),
            subject=str(claims["sub"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            room=str(claims["room"]) if "room" in claims else None,
        )


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer <token>")
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def grpc_principal(
    authority: TokenAuthority, metadata: Iterable[tuple[str, str | bytes]] | None, scope: str
) -> Principal:
    """The caller of a gRPC method, from its ``authorization`` metadata, holding ``scope``.

    Raises Unauthenticated or PermissionDenied, which the server interceptor turns into
    UNAUTHENTICATED and PERMISSION_DENIED.
    """
    header = next((v for k, v in (metadata or ()) if k == "authorization"), None)
    token = header.decode() if isinstance(header, bytes) else header
    caller = authority.verify(bearer_token(token))
    caller.require(scope)
    return caller


# Declares the bearer scheme in OpenAPI (the Authorize button of /docs); errors are ours.
_BEARER = Depends(HTTPBearer(auto_error=False, description="a Livecart access token"))


def require(authority: TokenAuthority, scope: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, holding ``scope``."""

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
        return caller

    return principal
