"""Control issues room-bound tokens that ingest, the relay and chat verify on their own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from livecart_control.app import SERVICE
from livecart_control.settings import ControlSettings
from livecart_core.auth import TokenAuthority
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.service import Service
from livecart_core.testing import TEST_AUTH_SECRET

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
BACKEND = TOKENS.issue("shop-1", "shop-1-backend", ("tokens:issue",))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def control(postgres: EmbeddedPostgres) -> AsyncIterator[httpx.AsyncClient]:
    settings = ControlSettings(
        bus="memory",
        database_url=postgres.url,
        migrate_on_start=True,
        auth_secret=TEST_AUTH_SECRET,
        http_host="127.0.0.1",
        http_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
    )
    service = Service(SERVICE, settings)
    await service.start()
    transport = httpx.ASGITransport(app=service.http_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
        yield client
    await service.stop()


async def test_a_backend_gets_a_room_bound_publish_token(control: httpx.AsyncClient) -> None:
    body = {"room": "spring-sale", "subject": "merchant-7", "scopes": ["publish"], "ttl_s": 600}
    response = await control.post("/v1/tokens", json=body, headers=bearer(BACKEND))
    assert response.status_code == 201, response.text
    issued = response.json()
    assert issued["room"] == "spring-sale" and issued["scopes"] == ["publish"]
    assert abs(issued["expires_at"] - (time.time() + 600)) < 5
    holder = TOKENS.verify(issued["token"])
    assert (holder.tenant_id, holder.subject, holder.room) == (
        "shop-1",
        "merchant-7",
        "spring-sale",
    )
    assert holder.scopes == {"publish"}


async def test_viewer_tokens_and_takeover_are_separate_scopes(control: httpx.AsyncClient) -> None:
    body = {"room": "r1", "subject": "viewer-1", "scopes": ["play", "chat", "play"]}
    response = await control.post("/v1/tokens", json=body, headers=bearer(BACKEND))
    assert response.status_code == 201, response.text
    assert TOKENS.verify(response.json()["token"]).scopes == {"play", "chat"}
    host = {"room": "r1", "subject": "host", "scopes": ["publish", "publish:takeover"]}
    response = await control.post("/v1/tokens", json=host, headers=bearer(BACKEND))
    assert TOKENS.verify(response.json()["token"]).scopes == {"publish", "publish:takeover"}


@pytest.mark.parametrize(
    "body",
    [
        {"room": "r1", "subject": "m", "scopes": ["commerce:admin"]},  # not a media scope
        {"room": "r1", "subject": "m", "scopes": ["tokens:issue"]},  # no minting issuers
        {"room": "r1", "subject": "m", "scopes": []},
        {"room": "r1", "subject": "m", "scopes": ["play"], "ttl_s": 86401},
        {"room": "r1", "subject": "m", "scopes": ["play"], "ttl_s": 10},
        {"room": "no spaces", "subject": "m", "scopes": ["play"]},
        {"room": "r1", "subject": "", "scopes": ["play"]},
        {"subject": "m", "scopes": ["play"]},
    ],
)
async def test_bad_requests_are_422_with_the_field(
    control: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await control.post("/v1/tokens", json=body, headers=bearer(BACKEND))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_argument"


async def test_only_a_backend_credential_may_issue(control: httpx.AsyncClient) -> None:
    body = {"room": "r1", "subject": "m", "scopes": ["publish"]}
    assert (await control.post("/v1/tokens", json=body)).status_code == 401
    viewer = TOKENS.issue("shop-1", "viewer", ("play",), room="r1")
    refused = await control.post("/v1/tokens", json=body, headers=bearer(viewer))
    assert refused.status_code == 403 and "tokens:issue" in refused.json()["message"]
    other = TokenAuthority("another-secret-of-at-least-32-bytes!!").issue(
        "x", "y", ("tokens:issue",)
    )
    assert (await control.post("/v1/tokens", json=body, headers=bearer(other))).status_code == 401


async def test_a_room_bound_issuer_issues_for_its_own_room_only(
    control: httpx.AsyncClient,
) -> None:
    issuer = TOKENS.issue("shop-1", "room-bot", ("tokens:issue",), room="room-a")
    own = {"room": "room-a", "subject": "viewer-1", "scopes": ["play"]}
    assert (await control.post("/v1/tokens", json=own, headers=bearer(issuer))).status_code == 201
    other = {"room": "room-b", "subject": "viewer-1", "scopes": ["play"]}
    refused = await control.post("/v1/tokens", json=other, headers=bearer(issuer))
    assert refused.status_code == 403
    assert "room-a" in refused.json()["message"]


async def test_claims_of_the_wrong_type_are_refused(control: httpx.AsyncClient) -> None:
    import jwt

    now = int(time.time())
    claims = {"iss": "livecart", "sub": "x", "scope": "tokens:issue", "iat": now, "exp": now + 60}
    for tenant in (["a", "b"], 7, {"t": 1}, ""):
        forged = jwt.encode({**claims, "tenant": tenant}, TEST_AUTH_SECRET, algorithm="HS256")
        body = {"room": "r", "subject": "s", "scopes": ["play"]}
        answer = await control.post("/v1/tokens", json=body, headers=bearer(forged))
        assert answer.status_code == 401, (tenant, answer.text)
