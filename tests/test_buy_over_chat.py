"""The buy button over the viewer's chat WebSocket: chat and commerce each their own process on
real Kafka and Postgres; viewers send ``reserve`` and hear commerce's answer in an ack or an
error frame, with commerce's guarantees (no oversell, the per-user limit, the tenant check,
idempotency keys) kept through chat's batching."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from livecart_core.auth import TokenAuthority
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
TENANT = f"buy-{uuid.uuid4().hex[:6]}"
VIEWER = ("play", "chat", "commerce:buy")
MERCHANT_TOKEN = TOKENS.issue(TENANT, "merchant", ["commerce:admin", "commerce:buy"])
MERCHANT = {"Authorization": f"Bearer {MERCHANT_TOKEN}"}


class Buyer:
    """A viewer's WebSocket that sends reservations and collects their answers by ref."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.answers: dict[str, dict[str, Any]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.conn:
            frame = json.loads(message)
            if frame["type"] in ("ack", "error") and frame.get("ref"):
                self.answers[frame["ref"]] = frame

    async def reserve(self, sale: str, key: str, quantity: int = 1) -> dict[str, Any]:
        ref = uuid.uuid4().hex[:12]
        ask = {"type": "reserve", "ref": ref, "flash_sale_id": sale, "quantity": quantity,
               "idempotency_key": key}  # fmt: skip
        await self.conn.send(json.dumps(ask))
        async with asyncio.timeout(15):
            while ref not in self.answers:
                await asyncio.sleep(0.01)
        return self.answers[ref]


async def join(
    chat: ServiceProcess, room: str, user: str, *scopes: str, tenant: str = TENANT
) -> Buyer:
    token = TOKENS.issue(tenant, user, scopes or VIEWER)
    return Buyer(await connect(f"ws://127.0.0.1:{chat.ws_port}/ws/rooms/{room}?token={token}"))


async def new_sale(shop: httpx.AsyncClient, quantity: int, limit: int) -> str:
    product = await shop.post(
        "/v1/products",
        headers={**MERCHANT, "Idempotency-Key": uuid.uuid4().hex},
        json={"title": "Silk scarf", "skus": [{"price_minor": 4900, "currency": "EUR",
                                               "stock": 100}]},
    )  # fmt: skip
    assert product.status_code == 201, product.text
    now = datetime.now(UTC)
    sale = await shop.post(
        "/v1/flash-sales",
        headers={**MERCHANT, "Idempotency-Key": uuid.uuid4().hex},
        json={"sku_id": product.json()["skus"][0]["id"], "sale_price_minor": 1900,
              "quantity": quantity, "per_user_limit": limit,
              "starts_at": (now - timedelta(seconds=5)).isoformat(),
              "ends_at": (now + timedelta(hours=1)).isoformat()},
    )  # fmt: skip
    assert sale.status_code == 201, sale.text
    return str(sale.json()["id"])


async def test_a_crowd_buys_over_chat_and_the_sale_never_oversells(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres
) -> None:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
        "LIVECART_MIGRATE_ON_START": "true",
    }
    room = f"sale-{uuid.uuid4().hex[:8]}"
    with ServiceProcess("livecart_commerce", env) as commerce:
        chat_env = {**env, "LIVECART_COMMERCE_GRPC_ADDRESS": f"127.0.0.1:{commerce.grpc_port}"}
        async with httpx.AsyncClient(base_url=commerce.url, timeout=10) as shop:
            chat = ServiceProcess("livecart_chat", chat_env).start()
            try:
                await buy_over_chat(chat, shop, room)
            finally:
                chat.stop()


async def buy_over_chat(chat: ServiceProcess, shop: httpx.AsyncClient, room: str) -> None:
    sale = await new_sale(shop, quantity=25, limit=2)
    crowd = [await join(chat, room, f"v{i}") for i in range(40)]
    # Everyone presses buy at once: 25 units, 40 buyers.
    answers = await asyncio.gather(*(b.reserve(sale, f"k-{i}") for i, b in enumerate(crowd)))
    orders = [a["order"] for a in answers if a["type"] == "ack"]
    refusals = [a["code"] for a in answers if a["type"] == "error"]
    assert len(orders) == 25 and refusals == ["sold_out"] * 15, refusals
    assert {o["buyer_id"] for o in orders} <= {f"v{i}" for i in range(40)}
    assert all(o["flash_sale_id"] == sale and o["unit_price_minor"] == 1900 for o in orders)
    assert all(o["currency"] == "EUR" and o["quantity"] == 1 for o in orders)
    # A retry with the same key is the same order, not a second one.
    lucky = next(i for i, a in enumerate(answers) if a["type"] == "ack")
    again = await crowd[lucky].reserve(sale, f"k-{lucky}")
    assert again["type"] == "ack" and again["order"]["id"] == answers[lucky]["order"]["id"]
    listed = await shop.get(f"/v1/flash-sales/{sale}", headers=MERCHANT)
    assert listed.status_code == 200 and listed.json()["remaining"] == 0, listed.text
    mine = (await shop.get(f"/v1/orders?buyer=v{lucky}", headers=MERCHANT)).json()["orders"]
    assert [o["id"] for o in mine] == [answers[lucky]["order"]["id"]]

    # The per-user limit and the tenant check hold through the edge.
    roomy = await new_sale(shop, quantity=10, limit=2)
    greedy = await crowd[0].reserve(roomy, "g-1", quantity=3)
    assert greedy["code"] == "limit_exceeded", greedy
    stranger = await join(chat, room, "v0", tenant="another-shop")
    foreign = await stranger.reserve(roomy, "s-1")
    assert foreign["code"] == "not_found", foreign
    # Without commerce:buy the viewer is refused by chat, with the scope it lacks.
    watcher = await join(chat, room, "w1", "play", "chat")
    denied = await watcher.reserve(roomy, "w-1")
    assert denied["code"] == "permission_denied" and "commerce:buy" in denied["message"]
    bad = await crowd[1].reserve("not-a-sale", "b-1")
    assert bad["code"] == "invalid_message", bad
    # The socket still chats after all that.
    await crowd[1].conn.send(json.dumps({"type": "comment", "text": "got one!", "ref": "c"}))
    async with asyncio.timeout(10):
        while "c" not in crowd[1].answers:
            await asyncio.sleep(0.01)
    assert crowd[1].answers["c"]["type"] == "ack"
    for buyer in [*crowd, stranger, watcher]:
        await buyer.conn.close()


async def test_a_buyer_hears_unavailable_when_commerce_is_down(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]  # bound, never listening: connections are refused
        env = {
            "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "LIVECART_DATABASE_URL": postgres.url,
            "LIVECART_MIGRATE_ON_START": "true",
            "LIVECART_COMMERCE_GRPC_ADDRESS": f"127.0.0.1:{nobody}",
            "LIVECART_RESERVE_TIMEOUT_S": "1",
        }
        with ServiceProcess("livecart_chat", env) as chat:
            buyer = await join(chat, f"down-{uuid.uuid4().hex[:6]}", "ula")
            began = time.monotonic()
            answer = await buyer.reserve(str(uuid.uuid4()), "u-1")
            assert answer["code"] == "unavailable" and "idempotency_key" in answer["message"]
            assert time.monotonic() - began < 3
            await buyer.conn.close()
