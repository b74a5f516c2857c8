"""A live room end to end, each service its own process on real Kafka and Postgres: the host
pins a product, runs a chat-keyword lottery and drops a red packet in commerce; viewers see each
as a system event in the chat room, and enter the lottery by commenting over the WebSocket."""

from __future__ import annotations

import asyncio
import json
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
TENANT = f"live-{uuid.uuid4().hex[:6]}"
VIEWER = ("play", "chat", "commerce:buy")
HOST = (*VIEWER, "chat:moderate", "commerce:admin")


class Seat:
    """A viewer's WebSocket, collecting the events of the room."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.conn:
            frame = json.loads(message)
            if frame["type"] == "batch":
                self.events.extend(frame["events"])

    def system(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["kind"] == "system" and e["event"] == kind]

    async def wait_for(self, kind: str, timeout_s: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while not self.system(kind):
                await asyncio.sleep(0.05)
        return self.system(kind)[0]


def bearer(user: str, scopes: tuple[str, ...]) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(TENANT, user, scopes)}"}


async def test_a_live_room_across_commerce_and_chat(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres
) -> None:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
        "LIVECART_MIGRATE_ON_START": "true",
    }
    room = f"show-{uuid.uuid4().hex[:8]}"
    with (
        ServiceProcess(
            "livecart_commerce", {**env, "LIVECART_LOTTERY_DRAW_DELAY_S": "0.5"}
        ) as shop,
        ServiceProcess("livecart_chat", env) as chat,
    ):
        seats = {}
        for user, scopes in (("host", HOST), ("ann", VIEWER), ("bob", VIEWER)):
            token = TOKENS.issue(TENANT, user, scopes)
            conn = await connect(f"ws://127.0.0.1:{chat.ws_port}/ws/rooms/{room}?token={token}")
            seats[user] = Seat(conn)
        host = bearer("host", HOST)
        async with httpx.AsyncClient(base_url=shop.url, timeout=10) as commerce:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                headers = {**host, "Idempotency-Key": uuid.uuid4().hex}
                answer = await commerce.post(path, headers=headers, json=body)
                assert answer.status_code in (200, 201), answer.text
                result: dict[str, Any] = answer.json()
                return result

            product = await post(
                "/v1/products",
                {"title": "Jade bracelet", "skus": [{"price_minor": 25900, "currency": "USD",
                                                     "stock": 5}]},
            )  # fmt: skip
            lineup = {"product_ids": [product["id"]]}
            assert (
                await commerce.put(f"/v1/rooms/{room}/lineup", headers=host, json=lineup)
            ).is_success
            pin = {"product_id": product["id"]}
            assert (await commerce.put(f"/v1/rooms/{room}/pin", headers=host, json=pin)).is_success
            pinned = await seats["bob"].wait_for("product_pinned")
            assert pinned["title"] == "Jade bracelet" and pinned["price_from_minor"] == 25900

            closes = datetime.now(UTC) + timedelta(seconds=4)
            lottery = await post(
                "/v1/lotteries",
                {"room_id": room, "keyword": "jade", "prize_sku_id": product["skus"][0]["id"],
                 "winners": 1, "closes_at": closes.isoformat()},
            )  # fmt: skip
            opened = await seats["ann"].wait_for("lottery_open")
            assert opened["keyword"] == "jade" and opened["seed_sha256"] == lottery["seed_sha256"]
            await seats["ann"].conn.send(json.dumps({"type": "comment", "text": "JADE please!"}))
            await seats["bob"].conn.send(json.dumps({"type": "comment", "text": "how much?"}))
            result = await seats["bob"].wait_for("lottery_result")
            assert result["winner_user_ids"] == ["ann"] and result["entrants"] == 1
            assert result["lottery_id"] == lottery["id"]

            packet = await post(
                "/v1/red-packets",
                {"room_id": room, "total_minor": 1000, "currency": "USD", "shares": 2},
            )
            dropped = await seats["ann"].wait_for("red_packet")
            assert dropped["red_packet_id"] == packet["id"] and dropped["shares"] == 2
            grab = await commerce.post(
                f"/v1/red-packets/{packet['id']}/grab", headers=bearer("ann", VIEWER)
            )
            assert grab.status_code == 200, grab.text
            grabbed = await seats["host"].wait_for("red_packet_grabbed")
            assert grabbed["user_id"] == "ann" and grabbed["shares_left"] == 1
        for seat in seats.values():
            kinds = [e["event"] for e in seat.events if e["kind"] == "system"]
            assert kinds == [
                "product_pinned", "lottery_open", "lottery_result", "red_packet",
                "red_packet_grabbed",
            ]  # fmt: skip
            await seat.conn.close()
