"""Red packets against real Postgres and through the service's HTTP API: the shares add up to the
total exactly, concurrent grabs never over-grab, and a user never holds two shares."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict

import httpx
import pytest

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.red_packets import (
    MAX_SHARES,
    Grabbed,
    RedPacketEmpty,
    RedPacketExpired,
    RedPacketIn,
    create_red_packet,
    grab,
    split,
)
from livecart_core.db import Database
from livecart_core.errors import NotFound
from livecart_core.localinfra.postgres import EmbeddedPostgres

from .conftest import MERCHANT, assert_refused, auth


def packet(total_minor: int, shares: int, *, room: str = "room-1") -> RedPacketIn:
    return RedPacketIn(room_id=room, total_minor=total_minor, currency="CNY", shares=shares)


async def events_of(db: Database, red_packet_id: uuid.UUID) -> list[CommerceEvent]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("select payload from outbox where key = 'acme' order by id")
    events = [CommerceEvent.FromString(row["payload"]) for row in rows]
    return [
        e
        for e in events
        if str(red_packet_id)
        in (e.red_packet_created.red_packet_id, e.red_packet_grabbed.red_packet_id)
    ]


def test_split_sums_exactly_with_every_share_at_least_one() -> None:
    rng = random.Random(20261124)
    cases = [(1, 1), (7, 7), (10_000, MAX_SHARES), (2**53 - 1, MAX_SHARES), (5, 1)]
    for _ in range(500):
        shares = rng.choice([rng.randint(1, 10), rng.randint(1, 200), rng.randint(1, MAX_SHARES)])
        total = rng.choice([shares, shares + rng.randint(0, 100), rng.randint(shares, 10**9)])
        cases.append((total, shares))
    for total, shares in cases:
        amounts = split(total, shares)
        assert len(amounts) == shares
        assert sum(amounts) == total, (total, shares)
        assert min(amounts) >= 1, (total, shares)
    for total, shares in [(4, 5), (0, 1), (10, 0)]:
        with pytest.raises(ValueError):
            split(total, shares)


async def test_two_hundred_concurrent_grabs_take_exactly_the_hundred_shares(
    commerce_db: Database, postgres: EmbeddedPostgres
) -> None:
    created = await create_red_packet(commerce_db.pool, "acme", "host", packet(88_888, 100))
    # Its own pool, so the grabs really run side by side on 50 connections.
    grabbers = Database(postgres.url, "commerce", pool_size=50)
    await grabbers.connect()
    try:
        users = [f"viewer-{i % 150}" for i in range(200)]  # 50 viewers grab twice at once
        random.shuffle(users)
        outcomes = await asyncio.gather(
            *(grab(grabbers.pool, "acme", created.id, user) for user in users),
            return_exceptions=True,
        )
    finally:
        await grabbers.close()

    got: dict[str, set[int]] = defaultdict(set)
    for user, outcome in zip(users, outcomes, strict=True):
        if isinstance(outcome, Grabbed):
            got[user].add(outcome.amount_minor)
        else:
            assert isinstance(outcome, RedPacketEmpty), repr(outcome)
    assert len(got) == 100
    assert all(len(amounts) == 1 for amounts in got.values()), "a user got two shares"
    assert sum(min(amounts) for amounts in got.values()) == 88_888

    async with commerce_db.pool.acquire() as conn:
        assert await conn.fetchval(
            "select shares_left from red_packets where id = $1", created.id
        ) == 0  # fmt: skip
        shares = await conn.fetch(
            "select user_id, amount_minor from red_packet_shares where red_packet_id = $1",
            created.id,
        )
    assert {s["user_id"]: {s["amount_minor"]} for s in shares} == got
    events = await events_of(commerce_db, created.id)
    kinds = [e.WhichOneof("change") for e in events]
    assert kinds == ["red_packet_created"] + ["red_packet_grabbed"] * 100
    assert events[0].red_packet_created.total_minor == 88_888
    assert events[0].red_packet_created.shares == 100
    grabbed = [e.red_packet_grabbed for e in events[1:]]
    assert {g.user_id: {g.amount_minor} for g in grabbed} == got
    assert sorted(g.shares_left for g in grabbed) == list(range(100))
    assert all(g.room_id == "room-1" and g.currency == "CNY" for g in grabbed)


async def test_one_user_grabbing_twice_at_once_gets_one_share(commerce_db: Database) -> None:
    for _ in range(20):
        created = await create_red_packet(commerce_db.pool, "acme", "host", packet(1000, 3))
        first, second = await asyncio.gather(
            grab(commerce_db.pool, "acme", created.id, "ann"),
            grab(commerce_db.pool, "acme", created.id, "ann"),
        )
        assert first.amount_minor == second.amount_minor
        again = await grab(commerce_db.pool, "acme", created.id, "ann")
        assert again == Grabbed(amount_minor=first.amount_minor, currency="CNY", shares_left=2)
        assert len(await events_of(commerce_db, created.id)) == 2  # created, one grab


async def test_empty_expired_and_other_tenants_packets(commerce_db: Database) -> None:
    pool = commerce_db.pool
    created = await create_red_packet(pool, "acme", "host", packet(5, 1))
    ann = await grab(pool, "acme", created.id, "ann")
    assert ann == Grabbed(amount_minor=5, currency="CNY", shares_left=0)
    with pytest.raises(RedPacketEmpty):
        await grab(pool, "acme", created.id, "bob")
    with pytest.raises(NotFound):
        await grab(pool, "other-shop", created.id, "bob")
    with pytest.raises(NotFound):
        await grab(pool, "acme", uuid.uuid4(), "bob")

    late = await create_red_packet(pool, "acme", "host", packet(50, 5))
    assert (await grab(pool, "acme", late.id, "ann")).shares_left == 4
    async with pool.acquire() as conn:
        await conn.execute(
            "update red_packets set expires_at = created_at + interval '1 microsecond'"
            " where id = $1",
            late.id,
        )
    with pytest.raises(RedPacketExpired):
        await grab(pool, "acme", late.id, "bob")
    assert (await grab(pool, "acme", late.id, "ann")).shares_left == 4  # hers stays hers


def test_drop_grab_and_read_over_http(commerce: httpx.Client) -> None:
    made = commerce.post(
        "/v1/red-packets",
        headers=MERCHANT,
        json={"room_id": "live-42", "total_minor": 300, "currency": "USD", "shares": 2},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["room_id"], body["total_minor"], body["currency"]) == ("live-42", 300, "USD")
    assert (body["shares"], body["shares_left"]) == (2, 2)
    url = f"/v1/red-packets/{body['id']}"
    ann, bob, cat = (auth("shop-a", u, "commerce:buy") for u in ("ann", "bob", "cat"))
    first = commerce.post(f"{url}/grab", headers=ann)
    assert first.status_code == 200, first.text
    assert first.json()["currency"] == "USD" and first.json()["shares_left"] == 1
    second = commerce.post(f"{url}/grab", headers=bob)
    assert second.status_code == 200
    assert first.json()["amount_minor"] + second.json()["amount_minor"] == 300
    empty = commerce.post(f"{url}/grab", headers=cat)
    assert empty.status_code == 409 and empty.json()["error"] == "red_packet_empty"
    assert commerce.post(f"{url}/grab", headers=ann).json() == {**first.json(), "shares_left": 0}
    assert commerce.get(url, headers=cat).json()["shares_left"] == 0
    assert commerce.get(url, headers=auth("shop-b", "cat", "commerce:buy")).status_code == 404


async def test_two_simultaneous_requests_from_one_user_over_http(commerce: httpx.Client) -> None:
    async with httpx.AsyncClient(base_url=commerce.base_url, timeout=10) as client:
        made = await client.post(
            "/v1/red-packets",
            headers={**MERCHANT, "Idempotency-Key": uuid.uuid4().hex},
            json={"room_id": "live-7", "total_minor": 10_000, "currency": "EUR", "shares": 10},
        )
        assert made.status_code == 201, made.text
        url = f"/v1/red-packets/{made.json()['id']}"
        dan = auth("shop-a", "dan", "commerce:buy")
        both = await asyncio.gather(*(client.post(f"{url}/grab", headers=dan) for _ in range(2)))
        assert [r.status_code for r in both] == [200, 200], [r.text for r in both]
        assert both[0].json()["amount_minor"] == both[1].json()["amount_minor"]
        assert (await client.get(url, headers=dan)).json()["shares_left"] == 9


BUYER = auth("shop-a", "v", "commerce:buy")
DROP = {"room_id": "r", "total_minor": 100, "currency": "USD", "shares": 10}


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "error"),
    [
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "total_minor": 9}, 422, "invalid_argument"),
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "shares": 0}, 422, "invalid_argument"),
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "shares": 10_001, "total_minor": 10**6},
         422, "invalid_argument"),
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "currency": "usd"}, 422, "invalid_argument"),
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "currency": "US"}, 422, "invalid_argument"),
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "room_id": ""}, 422, "invalid_argument"),
        ("post", "/v1/red-packets", MERCHANT, {**DROP, "expires_in_s": 0}, 422, "invalid_argument"),
        ("post", "/v1/red-packets", BUYER, DROP, 403, "permission_denied"),
        ("post", "/v1/red-packets", {}, DROP, 401, "unauthenticated"),
        ("post", f"/v1/red-packets/{uuid.uuid4()}/grab", BUYER, None, 404, "not_found"),
        ("get", f"/v1/red-packets/{uuid.uuid4()}", BUYER, None, 404, "not_found"),
        ("post", "/v1/red-packets/not-a-uuid/grab", BUYER, None, 422, "invalid_argument"),
        ("post", f"/v1/red-packets/{uuid.uuid4()}/grab", {}, None, 401, "unauthenticated"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx(
    commerce: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    body: object,
    status: int,
    error: str,
) -> None:
    assert_refused(commerce.request(method, path, headers=headers, json=body), status, error)


def test_total_below_shares_says_why(commerce: httpx.Client) -> None:
    response = commerce.post("/v1/red-packets", headers=MERCHANT, json={**DROP, "total_minor": 9})
    assert response.status_code == 422
    assert "must be at least shares" in str(response.json()["detail"])
