"""Room-scoped commerce (lineup, pin, red packets, lotteries; REST and gRPC): a room id is the
one shared rule, and a token bound to one room is refused in every other."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest

from livecart.commerce.v1 import commerce_service_pb2 as pb
from livecart.commerce.v1 import commerce_service_pb2_grpc as pb_grpc
from livecart_core.rpc import create_channel
from livecart_core.testing import ServiceProcess

from .conftest import TOKENS, assert_refused

HOST_SCOPES = ("commerce:admin", "commerce:buy")
BAD_ROOMS = ["a\r\nb", "room\u202e", "a b", "x" * 201, "caf\u00e9"]


class Rooms:
    """A fresh tenant with a product, a red packet and a lottery in room ``here``."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.tenant = f"shop-{uuid.uuid4().hex[:8]}"
        self.here = f"room-{uuid.uuid4().hex[:8]}"
        self.there = f"room-{uuid.uuid4().hex[:8]}"
        self.host = self.token("host", HOST_SCOPES)  # any room
        sku = {"price_minor": 100, "currency": "CNY", "stock": 10}
        self.product = self.ok(
            client.post("/v1/products", headers=self.host, json={"title": "Fan", "skus": [sku]})
        )
        self.sku = self.product["skus"][0]["id"]
        self.ok(
            client.put(
                f"/v1/rooms/{self.here}/lineup",
                headers=self.host,
                json={"product_ids": [self.product["id"]]},
            )
        )
        self.packet = self.ok(client.post("/v1/red-packets", headers=self.host,
                                          json=self.packet_body(self.here)))  # fmt: skip
        self.lottery = self.ok(client.post("/v1/lotteries", headers=self.host,
                                           json=self.lottery_body(self.here)))  # fmt: skip

    def token(self, user: str, scopes: tuple[str, ...], room: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS.issue(self.tenant, user, scopes, room=room)}"}

    @staticmethod
    def ok(response: httpx.Response) -> Any:
        assert response.is_success, response.text
        return response.json()

    @staticmethod
    def packet_body(room: str) -> dict[str, Any]:
        return {"room_id": room, "total_minor": 100, "currency": "CNY", "shares": 2}

    def lottery_body(self, room: str) -> dict[str, Any]:
        closes = datetime.now(UTC) + timedelta(hours=1)
        return {"room_id": room, "keyword": "fan", "prize_sku_id": self.sku, "winners": 1,
                "closes_at": closes.isoformat()}  # fmt: skip


@pytest.fixture
def rooms(commerce: httpx.Client) -> Rooms:
    return Rooms(commerce)


def room_calls(r: Rooms, room: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every room-scoped REST call, aimed at ``room``'s things (method, path, body)."""
    packet = r.packet["id"] if room == r.here else None
    lottery = r.lottery["id"] if room == r.here else None
    in_path = quote(room, safe="")
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", f"/v1/rooms/{in_path}/lineup", {"product_ids": [r.product["id"]]}),
        ("GET", f"/v1/rooms/{in_path}/lineup", None),
        ("PUT", f"/v1/rooms/{in_path}/pin", {"product_id": r.product["id"]}),
        ("POST", "/v1/red-packets", r.packet_body(room)),
        ("POST", "/v1/lotteries", r.lottery_body(room)),
    ]
    if packet:
        calls += [
            ("GET", f"/v1/red-packets/{packet}", None),
            ("POST", f"/v1/red-packets/{packet}/grab", None),
        ]
    if lottery:
        calls += [
            ("GET", f"/v1/lotteries/{lottery}", None),
            ("GET", f"/v1/lotteries/{lottery}/entrants", None),
            ("POST", f"/v1/lotteries/{lottery}/draw", None),
        ]
    return calls


def call(r: Rooms, headers: dict[str, str], method: str, path: str, body: Any) -> httpx.Response:
    headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
    return r.client.request(method, path, headers=headers, json=body)


def test_a_token_for_another_room_is_refused_on_every_room_scoped_endpoint(
    rooms: Rooms,
) -> None:
    elsewhere = rooms.token("host2", HOST_SCOPES, room=rooms.there)
    for method, path, body in room_calls(rooms, rooms.here):
        assert_refused(call(rooms, elsewhere, method, path, body), 403, "permission_denied")
    # The same token, in its own room, is served (a draw of an open lottery is a 409).
    at_home = rooms.token("host3", HOST_SCOPES, room=rooms.here)
    for method, path, body in room_calls(rooms, rooms.here):
        answer = call(rooms, at_home, method, path, body)
        assert answer.is_success or answer.json()["error"] == "lottery_open", (path, answer.text)


def test_a_room_id_must_follow_the_room_rule(rooms: Rooms) -> None:
    for bad in BAD_ROOMS:
        for method, path, body in room_calls(rooms, bad):
            refused = call(rooms, rooms.host, method, path, body)
            # In the path the shared token check refuses it (400); in a body, validation (422).
            status = 400 if path.startswith("/v1/rooms/") else 422
            assert_refused(refused, status, "invalid_argument")


@pytest.fixture
async def stub(commerce_process: ServiceProcess) -> AsyncIterator[pb_grpc.CommerceServiceStub]:
    async with create_channel(f"127.0.0.1:{commerce_process.grpc_port}") as channel:
        yield pb_grpc.CommerceServiceStub(channel)


async def test_pinned_product_over_grpc_is_room_bound(
    stub: pb_grpc.CommerceServiceStub, commerce: httpx.Client
) -> None:
    tenant = f"shop-{uuid.uuid4().hex[:8]}"

    def bearer(room: str | None) -> list[tuple[str, str]]:
        token = TOKENS.issue(tenant, "viewer", ["commerce:buy"], room=room)
        return [("authorization", f"Bearer {token}")]

    ask = pb.GetPinnedProductRequest(room_id="room-a")
    assert not (await stub.GetPinnedProduct(ask, metadata=bearer("room-a"))).pinned
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await stub.GetPinnedProduct(ask, metadata=bearer("room-b"))
    assert elsewhere.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for bad in BAD_ROOMS:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            bad_ask = pb.GetPinnedProductRequest(room_id=bad)
            await stub.GetPinnedProduct(bad_ask, metadata=bearer(None))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
