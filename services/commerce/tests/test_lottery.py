"""Chat-keyword lotteries through the commerce process, with comments published on Kafka's
``chat.messages`` the way the chat service publishes them: who enters, a draw anyone can redo
from what is published, prize orders at price 0, and the prize stock."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from livecart.events.v1.chat_pb2 import ChatEvent, Comment
from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.lottery import CHAT_TOPIC, draw
from livecart_core.bus import Event, KafkaBus, dead_letter_topic
from livecart_core.db import Database
from livecart_core.localinfra.kafka import KafkaBroker

from .conftest import assert_refused, auth

T = TypeVar("T")
DRAW_DELAY = timedelta(seconds=2)  # the default LIVECART_LOTTERY_DRAW_DELAY_S


class Shop:
    """A fresh tenant over HTTP: its merchant, its buyers, a prize SKU, lotteries."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tenant = f"shop-{uuid.uuid4().hex[:8]}"
        self.merchant = auth(self.tenant, "host", "commerce:admin", "commerce:buy")

    def buyer(self, name: str) -> dict[str, str]:
        return auth(self.tenant, name, "commerce:buy")

    async def prize(self, stock: int) -> tuple[str, str]:
        """A product with one SKU of ``stock`` units: (product id, SKU id)."""
        made = await self.client.post(
            "/v1/products",
            headers=self.merchant,
            json={"title": "Panda plush", "skus": [{"price_minor": 4900, "currency": "USD",
                                                    "stock": stock}]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        return made.json()["id"], made.json()["skus"][0]["id"]

    async def stock(self, product: str) -> int:
        got = await self.client.get(f"/v1/products/{product}", headers=self.merchant)
        assert got.status_code == 200, got.text
        units: int = got.json()["skus"][0]["stock"]
        return units

    async def open(
        self, room: str, sku: str, *, winners: int, lasts_s: float, keyword: str = "lucky"
    ) -> dict[str, Any]:
        closes_at = datetime.now(UTC) + timedelta(seconds=lasts_s)
        made = await self.client.post(
            "/v1/lotteries",
            headers=self.merchant,
            json={"room_id": room, "keyword": keyword, "prize_sku_id": sku, "winners": winners,
                  "closes_at": closes_at.isoformat()},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        lottery: dict[str, Any] = made.json()
        return lottery

    async def lottery(self, lottery_id: str) -> dict[str, Any]:
        got = await self.client.get(f"/v1/lotteries/{lottery_id}", headers=self.buyer("viewer"))
        assert got.status_code == 200, got.text
        lottery: dict[str, Any] = got.json()
        return lottery

    async def entrants(self, lottery_id: str, **page: str | int) -> dict[str, Any]:
        got = await self.client.get(
            f"/v1/lotteries/{lottery_id}/entrants", headers=self.buyer("viewer"), params=page
        )
        assert got.status_code == 200, got.text
        entrants: dict[str, Any] = got.json()
        return entrants


class Chat:
    """Publishes on ``chat.messages`` as the chat service does: ChatEvents keyed by room."""

    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus

    async def say(
        self, tenant: str, room: str, user: str, text: str, sent_at: datetime
    ) -> ChatEvent:
        stamp = Timestamp()
        stamp.FromDatetime(sent_at)
        message = ChatEvent(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant,
            room_id=room,
            sent_at=stamp,
            comment=Comment(user_id=user, display_name=user.title(), text=text),
        )
        await self.publish(room, message)
        return message

    async def publish(self, room: str, payload: bytes | ChatEvent) -> None:
        await self.bus.publish(CHAT_TOPIC, room, payload)


async def refused(chat: Chat, room: str, count: int = 2) -> list[Event]:
    """The dead letters the lottery's consumer wrote for ``room``, once there are ``count``."""
    letters: list[Event] = []

    async def keep(letter: Event) -> None:
        if letter.key == room and letter.header("dead-letter-group") == b"commerce-lottery":
            letters.append(letter)

    reader = await chat.bus.subscribe(
        dead_letter_topic(CHAT_TOPIC), f"reader-{uuid.uuid4().hex[:8]}", keep
    )

    async def all_there() -> bool:
        return len(letters) >= count

    try:
        await eventually(all_there)
    finally:
        await reader.stop()
    return letters


async def eventually(check: Callable[[], Awaitable[T]], timeout_s: float = 20.0) -> T:
    """What ``check()`` answers once it is truthy; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout_s}s: {check}"
        await asyncio.sleep(0.1)
    return value


async def until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)


@pytest.fixture(scope="module")
async def client(commerce: httpx.Client) -> AsyncIterator[httpx.AsyncClient]:
    """The ``commerce`` client for async tests: a fresh Idempotency-Key on every POST that does
    not set one."""

    async def add_key(request: httpx.Request) -> None:
        if request.method == "POST" and "idempotency-key" not in request.headers:
            request.headers["Idempotency-Key"] = uuid.uuid4().hex

    async with httpx.AsyncClient(
        base_url=commerce.base_url, timeout=10, event_hooks={"request": [add_key]}
    ) as async_client:
        yield async_client


@pytest.fixture(scope="module")
async def chat(kafka_broker: KafkaBroker, client: httpx.AsyncClient) -> AsyncIterator[Chat]:
    """A chat publisher, once the commerce process is seen taking entries from chat (its
    consumer has joined the group), so the tests' short windows are not spent waiting on it."""
    bus = KafkaBus(kafka_broker.bootstrap)
    await bus.start()
    try:
        chat = Chat(bus)
        shop = Shop(client)
        _, sku = await shop.prize(stock=1)
        warm_up = await shop.open("warm-up", sku, winners=1, lasts_s=300)
        await chat.say(shop.tenant, "warm-up", "viewer", "lucky", datetime.now(UTC))

        async def entered() -> bool:
            return (await shop.lottery(warm_up["id"]))["entrants"] == 1

        await eventually(entered, timeout_s=60)
        yield chat
    finally:
        await bus.stop()


async def outbox(db: Database, tenant: str, lottery_id: str) -> list[str]:
    """The kinds of the lottery's events in the outbox, in order."""
    return [e.WhichOneof("change") or "" for e in await lottery_events(db, tenant, lottery_id)]


async def lottery_events(db: Database, tenant: str, lottery_id: str) -> list[CommerceEvent]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("select payload from outbox where key = $1 order by id", tenant)
    events = [CommerceEvent.FromString(bytes(r["payload"])) for r in rows]
    return [
        e for e in events if lottery_id in (e.lottery_opened.lottery_id, e.lottery_drawn.lottery_id)
    ]


def rank_by_hand(seed: bytes, entrants: list[str]) -> tuple[str, list[str]]:
    """sha256-rank-v1 as commerce.proto describes it, written out independently of lottery.py."""
    entrants_sha256 = hashlib.sha256("\n".join(sorted(entrants)).encode()).hexdigest()
    ranked = sorted(
        entrants,
        key=lambda user: hashlib.sha256(seed + entrants_sha256.encode() + user.encode()).digest(),
    )
    return entrants_sha256, ranked


def test_draw_is_the_published_algorithm_and_ignores_entry_order() -> None:
    seed = bytes(range(32))
    users = [f"user-{i}" for i in range(200)] + ["Zoë", "zoe", "用户", "Émile", "émile"]
    entrants_sha256, ranked = rank_by_hand(seed, users)
    assert draw(seed, users, 10) == (entrants_sha256, ranked[:10])
    assert draw(seed, reversed(users + users[:50]), 10) == (entrants_sha256, ranked[:10])
    assert draw(seed, users, 500).winners == ranked  # more winners than entrants: all, ranked
    assert draw(bytes(32), users, 10).winners != ranked[:10]  # another seed, another draw
    assert draw(seed, [], 3) == (hashlib.sha256(b"").hexdigest(), [])


async def test_keyword_comments_in_the_window_enter_once_and_the_draw_can_be_redone(
    client: httpx.AsyncClient, chat: Chat, commerce_db: Database
) -> None:
    shop = Shop(client)
    product, sku = await shop.prize(stock=10)
    room, next_room = f"live-{uuid.uuid4().hex[:8]}", f"live-{uuid.uuid4().hex[:8]}"
    lottery = await shop.open(room, sku, winners=2, lasts_s=2.5, keyword="LuckyCat")
    assert (lottery["state"], lottery["entrants"], lottery["result"]) == ("open", 0, None)
    assert "seed" not in lottery and len(lottery["seed_sha256"]) == 64
    other = await shop.open(next_room, sku, winners=1, lasts_s=2.5, keyword="LuckyCat")
    assert await shop.stock(product) == 7
    url = f"/v1/lotteries/{lottery['id']}"
    too_soon = await client.post(f"{url}/draw", headers=shop.merchant)
    assert_refused(too_soon, 409, "lottery_open")

    opens_at = datetime.fromisoformat(lottery["opens_at"])
    closes_at = datetime.fromisoformat(lottery["closes_at"])
    inside = opens_at + (closes_at - opens_at) / 2
    say, tenant = chat.say, shop.tenant
    # One room is one partition, read in order: what must be skipped comes first, so that if it
    # held up the partition, nothing after it would enter.
    await chat.publish(room, b"\xff\xff not a ChatEvent")
    await say(tenant, room, "nul", "luckycat\x00", inside)  # Postgres text cannot hold a NUL
    await say(tenant, room, "ann", "I want LUCKYCAT!", inside)
    await say(tenant, room, "ann", "luckycat, again", inside + timedelta(milliseconds=100))
    bob = await say(tenant, room, "Bob", "LuckyCat", opens_at)  # the window includes opens_at
    await chat.publish(room, bob)  # redelivered as is
    await say(tenant, room, "cat", "hello everyone", inside)  # no keyword
    await say(tenant, room, "lucy", "lucky cat", inside)  # not the keyword either
    await say(tenant, room, "dan", "luckycat", opens_at - timedelta(seconds=1))  # too early
    await say(tenant, room, "eve", "luckycat", closes_at)  # too late: closes_at is excluded
    await say("shop-elsewhere", room, "gus", "luckycat", inside)  # another tenant's room
    await say(tenant, next_room, "fay", "LuckyCat", inside)  # the other room's lottery only
    await say(tenant, room, "émile", "抽奖 LUCKYCAT 抽奖", inside)  # the last in this room

    async def entrants_are(lottery_id: str, users: list[str]) -> bool:
        return bool((await shop.entrants(lottery_id))["user_ids"] == users)

    await eventually(lambda: entrants_are(other["id"], ["fay"]))
    entered = ["Bob", "ann", "émile"]  # code point order, as the draw sorts (no language's)
    await eventually(lambda: entrants_are(lottery["id"], entered))
    assert (await shop.lottery(lottery["id"]))["entrants"] == 3
    reasons = [letter.header("dead-letter-reason") or b"" for letter in await refused(chat, room)]
    assert reasons[0] == b"not a ChatEvent"
    assert reasons[1].startswith(b"chat comment cannot be stored: CharacterNotInRepertoireError")
    first = await shop.entrants(lottery["id"], limit=2)
    assert first == {"user_ids": ["Bob", "ann"], "next_after": "ann"}
    rest = await shop.entrants(lottery["id"], limit=2, after="ann")
    assert rest == {"user_ids": ["émile"], "next_after": None}

    await until(closes_at)
    answers = await asyncio.gather(
        *(client.post(f"{url}/draw", headers=shop.merchant) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    drawn = answers[0].json()
    assert all(a.json() == drawn for a in answers), "drawing again must answer the same result"
    assert drawn == await shop.lottery(lottery["id"])
    assert (drawn["state"], drawn["entrants"]) == ("drawn", 3)

    # The audit, from what was published alone.
    result = drawn["result"]
    seed = bytes.fromhex(result["seed"])
    assert hashlib.sha256(seed).hexdigest() == lottery["seed_sha256"]
    listed = (await shop.entrants(lottery["id"]))["user_ids"]
    entrants_sha256, ranked = rank_by_hand(seed, listed)
    assert result["algorithm"] == "sha256-rank-v1"
    assert result["entrants_sha256"] == entrants_sha256
    assert result["winner_user_ids"] == ranked[:2]

    winners, orders = result["winner_user_ids"], result["prize_order_ids"]
    assert len(set(orders)) == 2
    for winner, order_id in zip(winners, orders, strict=True):
        order = await client.get(f"/v1/orders/{order_id}", headers=shop.buyer(winner))
        assert order.status_code == 200, order.text
        assert (order.json()["id"], order.json()["state"]) == (order_id, "paid")
    loser = shop.buyer(ranked[2])
    assert (await client.get(f"/v1/orders/{orders[0]}", headers=loser)).status_code == 404
    async with commerce_db.pool.acquire() as conn:
        rows = await conn.fetch(
            "select user_id, origin, sku_id::text, quantity, unit_price_minor, total_minor, state"
            " from orders where id = any($1::uuid[])",
            orders,
        )
    assert sorted(tuple(r) for r in rows) == sorted(
        (winner, "lottery", sku, 1, 0, 0, "paid") for winner in winners
    )
    assert await shop.stock(product) == 7  # both prize units were won

    events = await lottery_events(commerce_db, shop.tenant, lottery["id"])
    assert [e.WhichOneof("change") for e in events] == ["lottery_opened", "lottery_drawn"]
    opened, announced = events[0].lottery_opened, events[1].lottery_drawn
    assert (opened.room_id, opened.keyword, opened.prize_sku_id) == (room, "LuckyCat", sku)
    assert (opened.winners, opened.seed_sha256) == (2, lottery["seed_sha256"])
    assert opened.opens_at.ToDatetime(tzinfo=UTC) == opens_at
    assert opened.closes_at.ToDatetime(tzinfo=UTC) == closes_at
    assert (announced.room_id, announced.seed, announced.entrants) == (room, result["seed"], 3)
    assert announced.entrants_sha256 == entrants_sha256
    assert list(announced.winner_user_ids) == winners
    assert list(announced.prize_order_ids) == orders
    assert announced.algorithm == "sha256-rank-v1"


async def test_the_drawer_draws_after_the_delay_and_returns_the_units_nobody_won(
    client: httpx.AsyncClient, chat: Chat, commerce_db: Database
) -> None:
    shop = Shop(client)
    product, sku = await shop.prize(stock=5)
    room = f"live-{uuid.uuid4().hex[:8]}"
    lottery = await shop.open(room, sku, winners=3, lasts_s=1.0)
    empty = await shop.open(f"live-{uuid.uuid4().hex[:8]}", sku, winners=2, lasts_s=1.0)
    assert await shop.stock(product) == 0
    # zoe already holds an order under the key a prize order takes ("lottery:<id>"): clients
    # choose their Idempotency-Keys, and that must neither stop the draw nor cost her the prize.
    zoe = shop.buyer("zoe")
    _, sale_sku = await shop.prize(stock=1)
    now = datetime.now(UTC)
    sale = await client.post(
        "/v1/flash-sales",
        headers=shop.merchant,
        json={"sku_id": sale_sku, "sale_price_minor": 100, "quantity": 1,
              "starts_at": (now - timedelta(seconds=5)).isoformat(),
              "ends_at": (now + timedelta(hours=1)).isoformat()},
    )  # fmt: skip
    assert sale.status_code == 201, sale.text
    squat = await client.post(
        f"/v1/flash-sales/{sale.json()['id']}/reservations",
        headers={**zoe, "Idempotency-Key": f"lottery:{lottery['id']}"},
        json={"quantity": 1},
    )
    assert squat.status_code == 201, squat.text
    await chat.say(shop.tenant, room, "zoe", "lucky me", datetime.now(UTC))

    async def drawn(lottery_id: str) -> dict[str, Any] | None:
        got = await shop.lottery(lottery_id)
        return got if got["state"] == "drawn" else None

    won = await eventually(lambda: drawn(lottery["id"]), timeout_s=15)
    result = won["result"]
    closes_at = datetime.fromisoformat(lottery["closes_at"])
    assert datetime.fromisoformat(result["drawn_at"]) >= closes_at + DRAW_DELAY
    assert (won["entrants"], result["winner_user_ids"]) == (1, ["zoe"])
    (prize_order,) = result["prize_order_ids"]
    assert prize_order != squat.json()["id"]
    order = await client.get(f"/v1/orders/{prize_order}", headers=zoe)
    assert order.status_code == 200, order.text
    assert order.json()["state"] == "paid"

    nobody = await eventually(lambda: drawn(empty["id"]), timeout_s=15)
    assert (nobody["entrants"], nobody["result"]["winner_user_ids"]) == (0, [])
    assert nobody["result"]["prize_order_ids"] == []
    assert nobody["result"]["entrants_sha256"] == hashlib.sha256(b"").hexdigest()
    assert await shop.stock(product) == 4  # 2 of the first lottery's 3 units, both of the second's
    for each in (lottery, empty):
        assert await outbox(commerce_db, shop.tenant, each["id"]) == [
            "lottery_opened",
            "lottery_drawn",
        ]


async def test_a_repeated_create_opens_one_lottery(client: httpx.AsyncClient) -> None:
    shop = Shop(client)
    product, sku = await shop.prize(stock=3)
    body = {"room_id": "r", "keyword": "lucky", "prize_sku_id": sku, "winners": 2,
            "closes_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}  # fmt: skip
    key = {**shop.merchant, "Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/v1/lotteries", headers=key, json=body)
    again = await client.post("/v1/lotteries", headers=key, json=body)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json() == again.json()
    assert await shop.stock(product) == 1
    changed = await client.post("/v1/lotteries", headers=key, json={**body, "winners": 1})
    assert_refused(changed, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"winners": 0}, 422, "invalid_argument"),
        ({"winners": 10_001}, 422, "invalid_argument"),
        ({"opens_at": timedelta(minutes=2), "closes_at": timedelta(minutes=1)}, 422,
         "invalid_argument"),
        ({"closes_at": timedelta(seconds=-1)}, 422, "invalid_argument"),
        ({"closes_at": "2031-01-01T00:00:00"}, 422, "invalid_argument"),  # no time zone
        ({"keyword": ""}, 422, "invalid_argument"),
        ({"keyword": "   "}, 422, "invalid_argument"),
        ({"keyword": "x" * 51}, 422, "invalid_argument"),
        ({"room_id": ""}, 422, "invalid_argument"),
        ({"prize_sku_id": "not-a-uuid"}, 422, "invalid_argument"),
        ({"prize_sku_id": str(uuid.uuid4())}, 404, "not_found"),
        ({"winners": 11}, 409, "not_enough_stock"),
    ],
)  # fmt: skip
async def test_bad_lotteries_get_a_clear_4xx(
    client: httpx.AsyncClient, change: dict[str, object], status: int, error: str
) -> None:
    shop = Shop(client)
    product, sku = await shop.prize(stock=10)
    now = datetime.now(UTC)
    body = {"room_id": "r", "keyword": "lucky", "prize_sku_id": sku, "winners": 1,
            "closes_at": now + timedelta(minutes=5), **change}  # fmt: skip
    body = {k: (now + v if isinstance(v, timedelta) else v) for k, v in body.items()}
    body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in body.items()}
    refused = await client.post("/v1/lotteries", headers=shop.merchant, json=body)
    assert_refused(refused, status, error)
    assert await shop.stock(product) == 10


async def test_other_tenants_and_callers_without_the_scope_are_refused(
    client: httpx.AsyncClient,
) -> None:
    shop, elsewhere = Shop(client), Shop(client)
    _, sku = await shop.prize(stock=10)
    lottery = await shop.open("r", sku, winners=1, lasts_s=300)
    url = f"/v1/lotteries/{lottery['id']}"
    body = {"room_id": "r", "keyword": "lucky", "prize_sku_id": sku, "winners": 1,
            "closes_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}  # fmt: skip
    ann, host, other_ann = shop.buyer("ann"), shop.merchant, elsewhere.buyer("ann")
    refusals = [
        ("post", "/v1/lotteries", elsewhere.merchant, body, 404, "not_found"),  # their SKU
        ("get", url, other_ann, None, 404, "not_found"),
        ("get", f"{url}/entrants", other_ann, None, 404, "not_found"),
        ("post", f"{url}/draw", elsewhere.merchant, None, 404, "not_found"),
        ("post", f"{url}/draw", host, None, 409, "lottery_open"),
        ("post", "/v1/lotteries", ann, body, 403, "permission_denied"),
        ("post", f"{url}/draw", ann, None, 403, "permission_denied"),
        ("get", url, {}, None, 401, "unauthenticated"),
        ("get", "/v1/lotteries/not-a-uuid", host, None, 422, "invalid_argument"),
        ("get", f"{url}/entrants?limit=0", host, None, 422, "invalid_argument"),
    ]
    for method, path, headers, json, status, error in refusals:
        answer = await client.request(method, path, headers=headers, json=json)
        assert_refused(answer, status, error)
    assert (await shop.lottery(lottery["id"]))["state"] == "open"
