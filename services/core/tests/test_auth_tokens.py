"""Token verification: what it accepts and refuses is PyJWT's judgement, whichever way it takes.

``TokenAuthority.verify`` checks tokens in the exact form ``issue`` writes without PyJWT (it is
on every request); these tests hold it to PyJWT's answers for tokens of every shape.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecart_core.auth import ISSUER, Principal, TokenAuthority
from livecart_core.errors import Unauthenticated

SECRET = "s" * 40
AUTHORITY = TokenAuthority(SECRET)


def reference(token: str) -> Principal | str:
    """PyJWT's judgement: refused if PyJWT refuses; else what verify makes of the same claims
    under a header of another form, which only PyJWT reads."""
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iss", "sub", "tenant"]},
        )
    except jwt.InvalidTokenError:
        return "refused"
    return verified(signed(b'{"typ":"JWT","alg":"HS256"}', json.dumps(claims).encode()))


def verified(token: str) -> Principal | str:
    try:
        return AUTHORITY.verify(token)
    except Unauthenticated:
        return "refused"


def segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: bytes, payload: bytes, secret: str = SECRET) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(mac)}"


HEADER = b'{"alg":"HS256","typ":"JWT"}'
NOW = int(time.time())
claim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=NOW - 10_000, max_value=NOW + 10_000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=NOW - 10, max_value=NOW + 10),
    st.sampled_from([ISSUER, "other", "", "shop-a", "ann", "commerce:buy", "room-1", "a\x00b"]),
    st.text(max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
)
claim_names = st.sampled_from(["iss", "tenant", "sub", "scope", "iat", "exp", "room", "nbf", "aud"])


@st.composite
def tokens(draw: st.DrawFn) -> str:
    claims: dict[str, object] = {
        "iss": ISSUER, "tenant": "shop-a", "sub": "ann", "scope": "commerce:buy",
        "iat": NOW - 5, "exp": NOW + 3600,
    }  # fmt: skip
    for name in draw(st.lists(claim_names, max_size=3)):
        if draw(st.booleans()):
            claims.pop(name, None)
        else:
            claims[name] = draw(claim_values)
    header = draw(
        st.sampled_from(
            [HEADER] * 4 + [b'{"typ":"JWT","alg":"HS256"}', b'{"alg":"HS256"}', b'{"alg":"none"}']
        )
    )
    secret = draw(st.sampled_from([SECRET] * 3 + ["t" * 40]))
    token = signed(header, json.dumps(claims).encode(), secret)
    damage = draw(st.sampled_from(["none"] * 4 + ["signature", "payload", "padding"]))
    if damage == "signature":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif damage == "payload":
        head, payload, sig = token.split(".")
        token = f"{head}.{payload[:-1]}x.{sig}"
    elif damage == "padding":
        token += "="
    return token


@settings(max_examples=400, deadline=None)
@given(tokens())
def test_verify_agrees_with_pyjwt(token: str) -> None:
    assert verified(token) == reference(token)


def test_an_issued_token_names_its_caller() -> None:
    token = AUTHORITY.issue("shop-a", "ann", ["commerce:buy"], room="room-1")
    assert AUTHORITY.verify(token) == Principal(
        "shop-a", "ann", frozenset({"commerce:buy"}), "room-1"
    )


def test_expired_and_foreign_tokens_are_refused_with_the_reason() -> None:
    expired = AUTHORITY.issue("shop-a", "ann", ["commerce:buy"], ttl_s=-1)
    with pytest.raises(Unauthenticated, match="expired"):
        AUTHORITY.verify(expired)
    foreign = TokenAuthority("t" * 40).issue("shop-a", "ann", ["commerce:buy"])
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        AUTHORITY.verify(foreign)
    future = signed(HEADER, json.dumps({"iss": ISSUER, "tenant": "shop-a", "sub": "ann",
                    "iat": NOW + 600, "exp": NOW + 3600}).encode())  # fmt: skip
    with pytest.raises(Unauthenticated, match="not yet valid"):
        AUTHORITY.verify(future)
